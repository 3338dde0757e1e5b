"""The CI quality gate: thresholds (``eval/thresholds.json``) and the check of a run's summary against them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.eval.gold import SPLITS, EvalError, GoldItem, load_gold
from rag.eval.run import run_adversarial, run_eval
from rag.parts import Parts

SECTIONS = ("retrieval", "full", "adversarial")


def load_thresholds(path: Path | str) -> dict[str, Any]:
    """Read and validate a thresholds file: ``split`` and ``k`` (what every gate run uses), the metric
    minimums of ``retrieval``, ``full`` and ``adversarial``, and ``full_subset_ids``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvalError(f"{path}: cannot read thresholds: {exc}") from exc
    if not isinstance(data, dict):
        raise EvalError(f"{path}: expected a JSON object")
    for section in SECTIONS:
        if not isinstance(data.get(section, {}), dict):
            raise EvalError(f"{path}: {section!r} must be an object of metric thresholds")
        for name, spec in data.get(section, {}).items():
            _bounds(name, spec)
    subset = data.get("full_subset_ids", [])
    if not isinstance(subset, list) or not all(isinstance(i, str) for i in subset):
        raise EvalError(f"{path}: 'full_subset_ids' must be a list of question ids")
    if data.get("split", "test") not in SPLITS:
        raise EvalError(f"{path}: 'split' must be one of {', '.join(SPLITS)}, got {data['split']!r}")
    k = data.get("k", 5)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise EvalError(f"{path}: 'k' must be a whole number of at least 1, got {k!r}")
    return data


def check_thresholds(summary: dict[str, Any], thresholds: dict[str, Any],
                     section: str | None = None) -> list[str]:
    """Human-readable failures of ``summary`` against its section of ``thresholds`` (``retrieval`` for a
    no-LLM run, ``full`` otherwise, unless ``section`` says); an empty list means the gate passes."""
    section = section or ("retrieval" if summary["no_llm"] else "full")
    failures = _scope_failures(summary, thresholds, section)
    for name, spec in thresholds.get(section, {}).items():
        failures += _metric_failures(name, spec, summary["metrics"])
    return failures


def _scope_failures(summary: dict[str, Any], thresholds: dict[str, Any], section: str) -> list[str]:
    """The run must cover what its thresholds were measured on, with the same k, or passing the gate
    means nothing."""
    failures = []
    if "k" in thresholds and summary.get("k") != thresholds["k"]:
        failures.append(f"{section} thresholds were measured with k = {thresholds['k']}, but this run used "
                        f"k = {summary.get('k')}")
    subset = thresholds.get("full_subset_ids") or [] if section == "full" else []
    if subset:
        if sorted(summary.get("question_ids", [])) != sorted(subset):
            failures.append(f"full thresholds apply to the {len(subset)} questions of full_subset_ids, but this "
                            f"run covered {len(summary.get('question_ids', []))} other or different questions")
        return failures
    if summary.get("limit") is not None or summary.get("ids") is not None:
        failures.append(f"{section} thresholds apply to a whole set, but this run used --limit or --ids")
    split = thresholds.get("split")
    if section != "adversarial" and split and summary.get("split") != split:
        failures.append(f"{section} thresholds apply to the {split!r} split, but this run covered "
                        f"{summary.get('split') or 'every split'}")
    return failures


def _metric_failures(name: str, spec: Any, metrics: dict[str, Any]) -> list[str]:
    minimum, maximum = _bounds(name, spec)
    if name not in metrics:
        return [f"{name}: unknown metric (known: {', '.join(metrics)})"]
    value = metrics[name]
    if value is None:
        return [f"{name} was not measured in this run"]
    failures = []
    if minimum is not None and value < minimum:
        failures.append(f"{name} {_pair(value, minimum, '<')}")
    if maximum is not None and value > maximum:
        failures.append(f"{name} {_pair(value, maximum, '>')}")
    return failures


def _bounds(name: str, spec: Any) -> tuple[float | None, float | None]:
    """A plain number is a minimum; ``{"min": x}``, ``{"max": y}`` or both bound either way."""
    def is_number(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool)

    if is_number(spec):
        return float(spec), None
    if isinstance(spec, dict) and spec and set(spec) <= {"min", "max"} and all(map(is_number, spec.values())):
        return spec.get("min"), spec.get("max")
    raise EvalError(f"threshold for {name} must be a number (a minimum) or {{\"min\": x, \"max\": y}}, "
                    f"got {spec!r}")


def _pair(value: float, bound: float, op: str) -> str:
    """``0.61 < 0.70``, with more digits when two decimals would print the same number twice."""
    digits = 2 if f"{value:.2f}" != f"{bound:.2f}" else 4
    return f"{value:.{digits}f} {op} {bound:.{digits}f}"


@dataclass(frozen=True)
class SectionResult:
    """One part of the gate: ``status`` is ``passed``, ``failed`` or ``not run`` (``why`` says why)."""

    name: str
    status: str
    failures: tuple[str, ...] = ()
    why: str = ""
    summary: dict[str, Any] | None = None


def run_gate(settings: Settings, gold_path: Path | str, thresholds_path: Path | str, out_dir: Path | str, *,
             adversarial_dir: Path | str | None = None, url: str | None = None, api_key: str | None = None,
             no_llm: bool = False, progress: bool = False, parts: Parts | None = None) -> list[SectionResult]:
    """The CI gate, every run with the thresholds' ``split`` and ``k``: retrieval on the whole split
    without the LLM; the full pipeline on ``full_subset_ids`` (the whole split when empty); the adversarial
    set on its own temporary index (in process only), each in process on the models ``parts`` builds. A part
    that cannot run here is ``not run``, never ``passed``."""
    thresholds = load_thresholds(thresholds_path)
    split, k, out = thresholds.get("split", "test"), thresholds.get("k", 5), Path(out_dir)
    subset = thresholds.get("full_subset_ids") or None
    _check_subset(load_gold(gold_path), subset, split)
    common: dict[str, Any] = {"url": url, "api_key": api_key, "k": k, "progress": progress, "parts": parts}
    retrieval = run_eval(settings, gold_path, out / "retrieval", no_llm=True, split=split, **common)
    sections = [_judge("retrieval", retrieval, thresholds)]
    if no_llm:
        return sections + [SectionResult(name, "not run", why="--no-llm") for name in ("full", "adversarial")]
    full = run_eval(settings, gold_path, out / "full", ids=subset, split=split, **common)
    sections.append(_judge("full", full, thresholds))
    if url is not None or adversarial_dir is None:
        why = "needs its own index, so it runs in process only" if url else "no adversarial set given"
        return sections + [SectionResult("adversarial", "not run", why=why)]
    adversarial = run_adversarial(settings, adversarial_dir, out / "adversarial", k=k, progress=progress,
                                  parts=parts)
    return sections + [_judge("adversarial", adversarial, thresholds)]


def gate_passed(sections: list[SectionResult]) -> bool:
    """Only a gate whose every part ran and passed has passed."""
    return bool(sections) and all(s.status == "passed" for s in sections)


def _check_subset(items: list[GoldItem], subset: list[str] | None, split: str) -> None:
    by_id = {item.id: item for item in items}
    unknown = sorted(set(subset or []) - set(by_id))
    if unknown:
        raise EvalError(f"full_subset_ids not in the gold set: {', '.join(unknown)}")
    elsewhere = sorted(i for i in subset or [] if by_id[i].split != split)
    if elsewhere:
        raise EvalError(f"full_subset_ids must come from the {split!r} split; these do not: {', '.join(elsewhere)}")


def _judge(name: str, summary: dict[str, Any], thresholds: dict[str, Any]) -> SectionResult:
    failures = tuple(check_thresholds(summary, thresholds, section=name))
    return SectionResult(name, "failed" if failures else "passed", failures, summary=summary)
