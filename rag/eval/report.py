"""The run's files: ``summary.json``, ``results.jsonl`` (one raw record per question) and ``report.md``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rag.eval.metrics import ANSWERABLE_TYPES, AnswerOutcome, QuestionResult, lost_at, verdict

_ANSWER_CELL_CHARS = 80
_QUESTION_CELL_CHARS = 50
_SPANS_PER_CELL = 3


def write_outputs(out_dir: Path, summary: dict[str, Any], results: Sequence[QuestionResult]) -> None:
    """Write ``summary.json``, ``results.jsonl`` (one raw record per question) and ``report.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
                                          encoding="utf-8")
    asked = not summary["no_llm"]
    with (out_dir / "results.jsonl").open("w", encoding="utf-8") as f:
        for result in results:
            record = {**asdict(result), "verdict": verdict(result, asked), "refused_by": _refused_by(result),
                      "lost_at": lost_at(result)}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out_dir / "report.md").write_text(render_report(summary, results), encoding="utf-8")


_METRIC_LABELS = {
    "questions": "questions", "answerable": "answerable", "unanswerable": "unanswerable",
    "errors": "questions that failed",
    "doc_hit@1": "right doc ranked first", "doc_hit@k": "right doc in top k", "mrr": "MRR (within k)",
    "evidence@k": "all must groups in top-k text", "answer_accuracy": "answerable answered correctly",
    "refusal_on_unanswerable": "unanswerable refused", "false_refusal": "answerable refused",
    "accuracy": "overall accuracy", "citation_doc_correct": "answers citing the right doc",
    "citation_doc_share": "citations into the right doc", "citation_span_valid": "citation spans valid",
    "citations": "citations", "answer_p50_s": "answer p50 (s)", "answer_p95_s": "answer p95 (s)",
    "ttft_p50_s": "first token p50 (s)", "ttft_p95_s": "first token p95 (s)",
    "search_p50_ms": "search p50 (ms)", "search_p95_ms": "search p95 (ms)",
    "prompt_tokens_mean": "prompt tokens, mean", "prompt_tokens_p50": "prompt tokens, p50",
    "list_complete": "list questions with every item", "list_item_recall": "list items named",
    "unanswerable_reached_model": "unanswerable that reached the model", "adversarial_pass": "adversarial cases passed",
    "evidence_shown": "all must groups in what the model was shown",
    "lost_retrieval": "answerable lost: not found by the search", "lost_before_model": "answerable lost: refused "
    "before the model", "lost_prompt": "answerable lost: found, not shown to the model",
    "lost_model": "answerable lost: shown to the model, its answer wrong or refused",
}


def render_report(summary: dict[str, Any], results: Sequence[QuestionResult]) -> str:
    """The Markdown report: run facts, the metrics (the whole run, then dev and test apart), the answer
    metrics by question type, then one row per question with the check that refused it."""
    asked = not summary["no_llm"]
    splits = list(summary.get("by_split", {}))
    lines = [
        "# rag eval report", "",
        f"- time: {summary['timestamp']}", f"- mode: {summary['mode']}"
        + (f" ({summary['url']})" if summary["url"] else "") + (", no LLM" if not asked else ""),
        f"- gold: {summary['gold']['path']}, k = {summary['k']}", "",
        "| metric | name | all | " + " | ".join(splits) + " |", "|---|---|---|" + "---|" * len(splits),
    ]
    for name, value in summary["metrics"].items():
        if "." in name:
            continue  # the per-type metrics get their own table
        cells = [_format_value(value)] + [_format_value(summary["by_split"][s].get(name)) for s in splits]
        lines.append(f"| {_METRIC_LABELS.get(name, name)} | `{name}` | " + " | ".join(cells) + " |")
    if asked:
        lines += ["", "## By question type", "", _type_table(summary, splits)]
    lines += ["", "## Questions", "",
              "| id | split | type | question | expected doc | rank | answer | cited spans | verdict | refused by "
              "| lost at | timings |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_report_row(result, asked) for result in results]
    return "\n".join(lines) + "\n"


def _type_table(summary: dict[str, Any], splits: list[str]) -> str:
    """Answer accuracy and false refusals per answerable type, for the run and each split."""
    columns = ["all", *splits]
    header = ("| type | " + " | ".join(f"accuracy ({c})" for c in columns) + " | "
              + " | ".join(f"false refusal ({c})" for c in columns) + " |")
    rows = [header, "|---|" + "---|" * (2 * len(columns))]
    views = [summary["metrics"]] + [summary["by_split"][s] for s in splits]
    for kind in ANSWERABLE_TYPES:
        accuracy = [_format_value(v.get(f"answer_accuracy.{kind}")) for v in views]
        refusal = [_format_value(v.get(f"false_refusal.{kind}")) for v in views]
        if any(cell != "—" for cell in accuracy):
            rows.append(f"| {kind} | " + " | ".join(accuracy + refusal) + " |")
    return "\n".join(rows)


def _refused_by(result: QuestionResult) -> str | None:
    """The check that refused (``Answer.reason``, e.g. "coverage 0.31 < 0.5"), when the service said."""
    if result.answer is None or not result.answer.reply.refused:
        return None
    return result.answer.reply.reason or "(not reported)"


def _report_row(result: QuestionResult, asked: bool) -> str:
    item, retrieval, answer = result.item, result.retrieval, result.answer
    rank = "—" if retrieval is None else (str(retrieval.rank) if retrieval.rank else "miss")
    answer_cell = answer.reply.text if answer else ""
    if result.error:
        answer_cell = f"error: {result.error}"
    question = (f"({len(item.history) // 2} earlier turn{'s' if len(item.history) > 2 else ''}) "
                if item.history else "") + item.question
    cells = [item.id, item.split, item.type, _truncate(question, _QUESTION_CELL_CHARS),
             item.doc or "— (unanswerable)", rank, _truncate(answer_cell, _ANSWER_CELL_CHARS), _spans_cell(answer),
             verdict(result, asked), _refused_by(result) or "", lost_at(result) or "", _timings_cell(result)]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _spans_cell(answer: AnswerOutcome | None) -> str:
    if answer is None:
        return ""
    spans = [f"{c.citation.doc_id}:{c.citation.start}-{c.citation.end}"
             + (" (bad span)" if c.span_valid is False else "") for c in answer.citations]
    more = len(spans) - _SPANS_PER_CELL
    return ", ".join(spans[:_SPANS_PER_CELL]) + (f" (+{more} more)" if more > 0 else "")


def _timings_cell(result: QuestionResult) -> str:
    parts = []
    if result.retrieval:
        parts.append(f"search {result.retrieval.search_ms:.0f} ms")
    if result.answer:
        reply = result.answer.reply
        if reply.ttft_s is not None:
            parts.append(f"first token {reply.ttft_s:.2f} s")
        parts.append(f"answer {reply.answer_s:.2f} s")
    return ", ".join(parts)


def _truncate(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
