"""Run an external benchmark (``rag eval --benchmark cmrc2018 --part tune|report``): index its kept
paragraphs into the run's own archive, ask each question of the part through the service and the naive
baseline back to back (same questions, same moment, so every row has its peer), score both, and write
``summary.json``, ``results.jsonl`` and ``report.md`` under ``<out>/<part>/``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.config import Settings
from rag.errors import NotReady, RagError
from rag.eval.backends import InProcessBackend, Reply
from rag.eval.baseline import BASELINE, beside
from rag.eval.cmrc import (
    BENCHMARKS,
    LEFT_OUT_SHARE,
    TUNE_SHARE,
    Benchmark,
    BenchQuestion,
    archive_settings,
    build_archive,
    is_right,
    load_cmrc,
    resolve_benchmark,
    select_questions,
)
from rag.eval.gold import EvalError
from rag.eval.paired import Outcome, Pair, TimedGenerator, paired_metrics, system_metrics, write_files
from rag.ingest import IngestReport
from rag.parts import Parts

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("eval/runs/cmrc2018")


def run_benchmark(settings: Settings, out_dir: Path | str, *, part: str, benchmark: str | Path = "cmrc2018",
                  ids: Sequence[str] | None = None, limit: int | None = None,
                  left_out_share: float = LEFT_OUT_SHARE, parts: Parts | None = None,
                  progress: bool = True, baseline: bool = True) -> dict[str, Any]:
    """Evaluate the service and the baseline on the questions of ``part`` (``ids`` of it, the first
    ``limit``); the archive is ``out_dir/archive`` (reused while its paragraphs are unchanged), the files
    go to ``out_dir/part``. Returns the summary. Without ``baseline`` (collecting tuning data), the
    baseline is not asked and its rows say so."""
    if limit is not None and limit < 1:
        raise EvalError(f"limit must be at least 1. Currently, limit is {limit}")
    bench = load_cmrc(resolve_benchmark(benchmark), left_out_share)
    questions = select_questions(bench, part, ids, limit)
    if not questions:
        raise EvalError(f"no questions selected from the {part} part")
    out_dir, parts = Path(out_dir), parts or Parts()
    started = time.perf_counter()
    embedder = parts.embedder(settings)
    folder = out_dir / "archive"
    ingested = build_archive(settings, bench, folder, embedder)
    archive = archive_settings(settings, folder)
    service_model = TimedGenerator(parts.generator(archive))
    baseline_model = TimedGenerator(parts.generator(archive) if baseline else service_model.inner)
    from rag.service import build_service  # the models load only for a run

    service = build_service(archive, Parts(embedder=lambda _: embedder, generator=lambda _: service_model))
    peer = beside(service, archive, Parts(generator=lambda _: baseline_model))
    ask_service = InProcessBackend(service).ask
    skipped = Outcome(None, False, None, "baseline not asked (--no-baseline)")
    pairs = [Pair(q, _ask(ask_service, service_model, q),
                  _ask(peer.ask, baseline_model, q) if baseline else skipped)
             for q in tqdm(questions, desc=f"rag eval {part}", unit="q", disable=not progress)]
    name = str(benchmark) if str(benchmark) in BENCHMARKS else bench.path.name
    summary = _summary(bench, name, part, questions, pairs, ingested, folder, settings,
                       {"ids": list(ids) if ids is not None else None, "limit": limit},
                       time.perf_counter() - started)
    write_files(out_dir / part, summary, pairs)
    log.info("benchmark: %d questions in %.1f s, written to %s", len(pairs), summary["duration_s"], out_dir / part)
    return summary


def _ask(ask: Callable[[list[dict[str, str]]], Reply], model: TimedGenerator, question: BenchQuestion) -> Outcome:
    """One system's reply to the question alone (no hint of its paragraph), scored."""
    model.take()
    try:
        reply = ask([{"role": "user", "content": question.question}])
    except (EvalError, NotReady):  # every question would fail the same way
        raise
    except RagError as exc:  # one bad question should not lose the run
        log.warning("question %s failed: %s", question.id, exc)
        return Outcome(None, False, model.take(), str(exc))
    return Outcome(reply, is_right(reply, question), model.take())


def _summary(bench: Benchmark, name: str, part: str, questions: Sequence[BenchQuestion], pairs: Sequence[Pair],
             ingested: IngestReport, folder: Path, settings: Settings, selection: dict[str, Any],
             seconds: float) -> dict[str, Any]:
    from rag.eval.run import _settings_snapshot

    left_out = [p.id for p in bench.paragraphs if p.left_out]
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "benchmark": {"name": name, "path": str(bench.path), "sha256": bench.sha256},
        "part": part,
        "split_rule": f"part by SHA-1 of the question id ({TUNE_SHARE:.0%} tune, the rest report); paragraphs "
                      f"left out of the archive by SHA-1 of the paragraph id ({bench.left_out_share:.0%})",
        "left_out_share": bench.left_out_share,
        "paragraphs": {"total": len(bench.paragraphs), "kept": len(bench.kept), "left_out": len(left_out),
                       "left_out_ids": left_out},
        "archive": {"folder": str(folder), "documents": ingested.documents, "chunks": ingested.chunks,
                    "embedded": ingested.embedded, "seconds": round(ingested.seconds, 1)},
        "baseline": BASELINE,
        **selection,
        "question_ids": [q.id for q in questions],
        "duration_s": round(seconds, 3),
        "metrics": {"service": system_metrics(pairs, "service"), "baseline": system_metrics(pairs, "baseline"),
                    "paired": paired_metrics(pairs)},
        "settings": _settings_snapshot(settings),
    }


def headline(summary: dict[str, Any]) -> list[str]:
    """The lines a person reads first: each system's scores and prompt-evaluation speed, and the time ratio."""
    metrics = summary["metrics"]
    lines = []
    for system in ("service", "baseline"):
        m = metrics[system]
        lines.append(f"{system}: accuracy {_share(m['answer_accuracy'])} of {m['answerable']} answerable, "
                     f"false refusal {_share(m['false_refusal'])}, refusal on unanswerable "
                     f"{_share(m['refusal_on_unanswerable'])} of {m['unanswerable']}, answer p50 "
                     f"{_number(m['answer_p50_s'], 's')} / p90 {_number(m['answer_p90_s'], 's')}, prompt evaluation "
                     f"{_number(m['prompt_tokens_per_s'], 'tokens/s')} ({m['model_calls']} model calls, "
                     f"{_number(m['prompt_tokens_mean'], 'prompt tokens')} mean, cached prefix included)")
    paired = metrics["paired"]
    lines.append(f"time service/baseline on the same {paired['paired_questions']} questions: p50 "
                 f"{_number(paired['time_ratio_p50'], '')}, total {_number(paired['time_ratio_total'], '')}; "
                 f"only the service right {paired['only_service_right']}, only the baseline "
                 f"{paired['only_baseline_right']}")
    return lines


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _number(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{value:.2f}" + (f" {unit}" if unit else "")
