"""Paired outcomes: every benchmark question asked of the service and of the naive baseline back to back,
the metrics of each system on the same questions, and the run's files (``summary.json``,
``results.jsonl``, ``report.md``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.eval.backends import Reply
from rag.eval.cmrc import BenchQuestion, char_f1
from rag.eval.metrics import mean, percentile, share
from rag.generate import Completion, Generator, Message

SYSTEMS = ("service", "baseline")


@dataclass(frozen=True)
class ModelCall:
    """One streamed generation: its prompt tokens (as the generator counts them, a cached prefix included)
    and the seconds from the call to the first text (prompt evaluation and the first token)."""

    prompt_tokens: int
    first_text_s: float


class TimedGenerator:
    """A ``Generator`` that passes everything through and records each streamed call (``take``)."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.name = inner.name
        self._last: ModelCall | None = None

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Completion:
        return self.inner.generate(messages, max_tokens, temperature)

    def stream(self, messages: Sequence[Message], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        yield from self._timed(self.inner.stream(messages, max_tokens, temperature), time.perf_counter())

    def _timed(self, stream: Iterator[str | Completion], started: float) -> Iterator[str | Completion]:
        first: float | None = None
        for item in stream:
            if isinstance(item, Completion):
                seconds = first if first is not None else time.perf_counter() - started
                self._last = ModelCall(item.prompt_tokens, seconds)
            elif item and first is None:
                first = time.perf_counter() - started
            yield item

    def take(self) -> ModelCall | None:
        """The call recorded since the last ``take`` (``None``: the model was not called)."""
        last, self._last = self._last, None
        return last


@dataclass(frozen=True)
class Outcome:
    """One system's reply to one question; ``right`` per ``rag.eval.cmrc.is_right``; ``model``: the model
    call it made (``None`` when it refused before the model, or failed)."""

    reply: Reply | None
    right: bool
    model: ModelCall | None = None
    error: str = ""


@dataclass(frozen=True)
class Pair:
    question: BenchQuestion
    service: Outcome
    baseline: Outcome

    def of(self, system: str) -> Outcome:
        outcome: Outcome = getattr(self, system)
        return outcome


# --- metrics (pure) -------------------------------------------------------------------------------------


def system_metrics(pairs: Sequence[Pair], system: str) -> dict[str, float | None]:
    """One system's answer accuracy, false refusal (answerable questions refused), refusal on unanswerable
    (left-out paragraphs' questions refused), answer time p50/p90 and the prompt-evaluation speed seen
    (prompt tokens ÷ seconds from the model call to its first text, summed over the calls)."""
    outcomes = [(p.question, p.of(system)) for p in pairs]
    answerable = [o for q, o in outcomes if q.answerable]
    unanswerable = [o for q, o in outcomes if not q.answerable]
    times = [o.reply.answer_s for _, o in outcomes if o.reply]
    calls = [o.model for _, o in outcomes if o.model]
    prompt_s = sum(c.first_text_s for c in calls)
    return {
        "questions": len(outcomes), "answerable": len(answerable), "unanswerable": len(unanswerable),
        "errors": sum(bool(o.error) for _, o in outcomes),
        "answer_accuracy": share(sum(o.right for o in answerable), len(answerable)),
        "answer_f1": mean([0.0 if not o.reply or o.reply.refused else char_f1(o.reply.text, q.answers)
                           for q, o in outcomes if q.answerable]),
        "false_refusal": share(sum(_refused(o) for o in answerable), len(answerable)),
        "refusal_on_unanswerable": share(sum(_refused(o) for o in unanswerable), len(unanswerable)),
        "answer_p50_s": percentile(times, 0.5), "answer_p90_s": percentile(times, 0.9),
        "model_calls": len(calls),
        "prompt_tokens_mean": mean([float(c.prompt_tokens) for c in calls]),
        "prompt_tokens_per_s": sum(c.prompt_tokens for c in calls) / prompt_s if prompt_s > 0 else None,
    }


def paired_metrics(pairs: Sequence[Pair]) -> dict[str, float | None]:
    """On the questions both systems replied to: the service's time over the baseline's (p50 over p50, and
    total over total), and the answerable questions only one of them got right."""
    both = [p for p in pairs if p.service.reply and p.baseline.reply]
    service = [p.service.reply.answer_s for p in both if p.service.reply]
    baseline = [p.baseline.reply.answer_s for p in both if p.baseline.reply]
    p50s, p50b = percentile(service, 0.5), percentile(baseline, 0.5)
    answerable = [p for p in pairs if p.question.answerable]
    return {
        "paired_questions": len(both),
        "time_ratio_p50": p50s / p50b if p50s is not None and p50b else None,
        "time_ratio_total": sum(service) / sum(baseline) if sum(baseline) > 0 else None,
        "both_right": sum(p.service.right and p.baseline.right for p in answerable),
        "only_service_right": sum(p.service.right and not p.baseline.right for p in answerable),
        "only_baseline_right": sum(p.baseline.right and not p.service.right for p in answerable),
    }


def _refused(outcome: Outcome) -> bool:
    return bool(outcome.reply and outcome.reply.refused)


# --- files ------------------------------------------------------------------------------------------------

_LABELS = {
    "questions": "questions", "answerable": "answerable (paragraph in the archive)",
    "unanswerable": "unanswerable (paragraph left out)", "errors": "questions that failed",
    "answer_accuracy": "answerable answered right", "answer_f1": "answerable, character F1 (refused: 0)",
    "false_refusal": "answerable refused",
    "refusal_on_unanswerable": "unanswerable refused", "answer_p50_s": "answer p50 (s)",
    "answer_p90_s": "answer p90 (s)", "model_calls": "model calls",
    "prompt_tokens_mean": "prompt tokens per call, mean", "prompt_tokens_per_s": "prompt tokens / s to first text",
}
_TEXT_CELL_CHARS = 60


def write_files(out_dir: Path, summary: dict[str, Any], pairs: Sequence[Pair]) -> None:
    """``summary.json``, ``results.jsonl`` (one record per question, both systems) and ``report.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
                                          encoding="utf-8")
    with (out_dir / "results.jsonl").open("w", encoding="utf-8") as f:
        for pair in pairs:
            record = {**asdict(pair.question), **{s: _record(pair.of(s)) for s in SYSTEMS}}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out_dir / "report.md").write_text(render_report(summary, pairs), encoding="utf-8")


def _record(outcome: Outcome) -> dict[str, Any]:
    reply = outcome.reply
    return {"text": reply.text if reply else None, "refused": reply.refused if reply else None,
            "right": outcome.right, "reason": reply.reason if reply else None,
            "answer_s": reply.answer_s if reply else None, "ttft_s": reply.ttft_s if reply else None,
            "prompt_tokens": outcome.model.prompt_tokens if outcome.model else None,
            "model_first_text_s": outcome.model.first_text_s if outcome.model else None,
            "context": list(reply.context or ()) if reply else None, "error": outcome.error}


def render_report(summary: dict[str, Any], pairs: Sequence[Pair]) -> str:
    """The run's facts, one metrics table (a column per system), the paired numbers, one row per question."""
    bench, archive, metrics = summary["benchmark"], summary["archive"], summary["metrics"]
    lines = [
        f"# rag eval --benchmark {bench['name']} --part {summary['part']}", "",
        f"- time: {summary['timestamp']}; {summary['duration_s']:.0f} s",
        f"- benchmark: {bench['path']} (sha256 {bench['sha256'][:12]}…)",
        f"- split: {summary['split_rule']}",
        f"- archive: {archive['documents']} paragraphs kept, {summary['paragraphs']['left_out']} left out; "
        f"{archive['chunks']} chunks ({archive['embedded']} embedded by this run) in {archive['folder']}",
        f"- baseline: {summary['baseline']}", "",
        "| metric | name | service | baseline |", "|---|---|---|---|",
    ]
    lines += [f"| {_LABELS.get(name, name)} | `{name}` | {_value(value)} | {_value(metrics['baseline'].get(name))} |"
              for name, value in metrics["service"].items()]
    lines += ["", "| paired (same questions) | value |", "|---|---|"]
    lines += [f"| `{name}` | {_value(value)} |" for name, value in metrics["paired"].items()]
    lines += ["", "## Questions", "",
              "| id | left out | question | gold | service | ✓ | refused by | s | baseline | ✓ | s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(p) for p in pairs]
    return "\n".join(lines) + "\n"


def _row(pair: Pair) -> str:
    q, s, b = pair.question, pair.service, pair.baseline
    cells = [q.id, "yes" if q.left_out else "", q.question, " / ".join(q.answers), _text(s), _mark(s),
             (s.reply.reason or "") if s.reply and s.reply.refused else "", _seconds(s), _text(b), _mark(b),
             _seconds(b)]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _text(outcome: Outcome) -> str:
    if outcome.error:
        return f"error: {outcome.error}"
    text = " ".join((outcome.reply.text if outcome.reply else "").split())
    return text if len(text) <= _TEXT_CELL_CHARS else text[:_TEXT_CELL_CHARS - 1] + "…"


def _mark(outcome: Outcome) -> str:
    return "✓" if outcome.right else "✗"


def _seconds(outcome: Outcome) -> str:
    return f"{outcome.reply.answer_s:.2f}" if outcome.reply else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _value(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)

