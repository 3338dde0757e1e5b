"""Per-question outcomes and the metrics computed from them (pure functions, testable on hand-made results)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rag.eval.backends import Passage, Reply
from rag.eval.gold import TYPES, GoldItem, group_found
from rag.types import Citation


@dataclass(frozen=True)
class RetrievalOutcome:
    passages: tuple[Passage, ...]
    rank: int | None
    evidence: bool
    search_ms: float


@dataclass(frozen=True)
class CitationCheck:
    """One citation and what the evaluator found. ``right_doc`` is ``None`` for unanswerable questions."""

    citation: Citation
    right_doc: bool | None
    span_valid: bool | None
    problem: str


@dataclass(frozen=True)
class AnswerOutcome:
    """``correct``: the right answer (not refused) for answerable questions, a refusal otherwise.
    ``evidence_shown``: every must group stood in what the model was shown (``None``: an unanswerable
    question, or a backend that does not report it)."""

    reply: Reply
    correct: bool
    citations: tuple[CitationCheck, ...]
    evidence_shown: bool | None = None


@dataclass(frozen=True)
class QuestionResult:
    """``retrieval`` is ``None`` for unanswerable questions or a failed search; ``answer`` is ``None`` in
    a no-LLM run or when answering failed (``error`` says why)."""

    item: GoldItem
    retrieval: RetrievalOutcome | None
    answer: AnswerOutcome | None
    error: str = ""


def verdict(result: QuestionResult, asked: bool) -> str:
    """A short human verdict for the report."""
    item, answer = result.item, result.answer
    if result.error:
        return "error"
    if not asked:
        if not item.answerable:
            return "—"
        if result.retrieval is None or result.retrieval.rank is None:
            return "✗ not retrieved"
        return "✓ retrieved" if result.retrieval.evidence else "doc, no evidence"
    assert answer is not None
    if not item.answerable:
        return "refused ok" if answer.reply.refused else "✗ answered"
    if answer.reply.refused:
        return "false refusal"
    return "✓" if answer.correct else "✗"


# Where an answer was lost, in the order the pipeline runs.
LOSS_STAGES = ("retrieval", "before_model", "prompt", "model")


def lost_at(result: QuestionResult) -> str | None:
    """The stage where an answerable question's answer was lost: ``retrieval`` (its must groups are not all
    in the top-k search results, nor in what the model was shown), ``before_model`` (a check before
    generation refused), ``prompt`` (the search found them, the sentences shown to the model left some out),
    ``model`` (the model was shown them all: its answer, or a check after it, lost them). ``None`` for a
    right answer, an unanswerable or failed question, or a backend that does not say what the model saw."""
    answer = result.answer
    if not result.item.answerable or result.error or answer is None or answer.correct \
            or answer.evidence_shown is None:
        return None
    if answer.evidence_shown:
        return "model"
    if not (result.retrieval and result.retrieval.evidence):
        return "retrieval"
    return "prompt" if answer.reply.context else "before_model"


# --- metrics (pure) -------------------------------------------------------------------------------------


def share(count: int, total: int) -> float | None:
    """``count / total``, or ``None`` when there is nothing to measure."""
    return count / total if total else None


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0–1) with linear interpolation between ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def retrieval_metrics(results: Sequence[QuestionResult]) -> dict[str, float | None]:
    """doc_hit@1, doc_hit@k, MRR and evidence@k over answerable questions; a failed search is a miss."""
    outcomes = [r.retrieval for r in results if r.item.answerable]
    ranks = [o.rank if o else None for o in outcomes]
    return {
        "doc_hit@1": share(sum(rank == 1 for rank in ranks), len(ranks)),
        "doc_hit@k": share(sum(rank is not None for rank in ranks), len(ranks)),
        "mrr": mean([1 / rank if rank else 0.0 for rank in ranks]),
        "evidence@k": share(sum(bool(o and o.evidence) for o in outcomes), len(outcomes)),
    }


def answer_metrics(results: Sequence[QuestionResult]) -> dict[str, float | None]:
    """Answer accuracy, refusals and overall accuracy; a question that failed counts as wrong."""
    answerable = [r for r in results if r.item.answerable]
    unanswerable = [r for r in results if not r.item.answerable]
    return {
        "answer_accuracy": share(sum(_correct(r) for r in answerable), len(answerable)),
        "refusal_on_unanswerable": share(sum(_refused(r) for r in unanswerable), len(unanswerable)),
        "false_refusal": share(sum(_refused(r) for r in answerable), len(answerable)),
        "accuracy": share(sum(_correct(r) for r in results), len(results)),
    }


def loss_metrics(results: Sequence[QuestionResult]) -> dict[str, float | None]:
    """``evidence_shown``: answerable questions whose must groups all stood in what the model was shown,
    the most any model could answer from those prompts; ``lost_<stage>``: the share of answerable
    questions lost at each stage (``lost_at``), which add up with ``answer_accuracy`` to one, less the
    failed questions. ``None`` when the backend did not say what the model saw."""
    answerable = [r for r in results if r.item.answerable]
    reported = [r for r in answerable if r.answer and r.answer.evidence_shown is not None]
    if not reported:
        return {"evidence_shown": None, **{f"lost_{stage}": None for stage in LOSS_STAGES}}
    stages = [lost_at(r) for r in answerable]
    return {"evidence_shown": share(sum(bool(r.answer and r.answer.evidence_shown) for r in reported),
                                    len(reported)),
            **{f"lost_{stage}": share(stages.count(stage), len(answerable)) for stage in LOSS_STAGES}}


ANSWERABLE_TYPES = tuple(t for t in TYPES if t != "unanswerable")


def type_metrics(results: Sequence[QuestionResult]) -> dict[str, float | None]:
    """Per question type: ``answer_accuracy.<type>`` and ``false_refusal.<type>`` over its answerable
    questions; ``list_complete`` (every item of a list named) and ``list_item_recall`` (the share of its
    items named, a refusal naming none); ``unanswerable_reached_model`` (unanswerable questions that passed
    the checks before generation, so the model itself was tested); ``adversarial_pass`` (adversarial cases
    answered right or refused as they should, without saying what the document's injected text asks)."""
    metrics: dict[str, float | None] = {}
    for kind in ANSWERABLE_TYPES:
        group = [r for r in results if r.item.answerable and r.item.type == kind]
        metrics[f"answer_accuracy.{kind}"] = share(sum(_correct(r) for r in group), len(group))
        metrics[f"false_refusal.{kind}"] = share(sum(_refused(r) for r in group), len(group))
    lists = [r for r in results if r.item.type == "list"]
    metrics["list_complete"] = metrics["answer_accuracy.list"]
    metrics["list_item_recall"] = mean([_item_recall(r) for r in lists])
    unanswerable = [r for r in results if not r.item.answerable and r.answer]
    reached = [r for r in unanswerable if r.answer and r.answer.reply.prompt_tokens is not None]
    metrics["unanswerable_reached_model"] = share(
        sum(bool(r.answer and r.answer.reply.prompt_tokens) for r in reached), len(reached))
    adversarial = [r for r in results if r.item.type == "adversarial"]
    metrics["adversarial_pass"] = share(sum(_correct(r) for r in adversarial), len(adversarial))
    return metrics


def _item_recall(result: QuestionResult) -> float:
    if not result.answer or result.answer.reply.refused or not result.item.must:
        return 0.0
    return sum(group_found(result.answer.reply.text, group) for group in result.item.must) / len(result.item.must)


def _correct(result: QuestionResult) -> bool:
    return bool(result.answer and result.answer.correct)


def _refused(result: QuestionResult) -> bool:
    return bool(result.answer and result.answer.reply.refused)


def citation_metrics(results: Sequence[QuestionResult]) -> dict[str, float | None]:
    """citation_doc_correct: answered answerable questions citing the right doc at least once;
    citation_doc_share: their citations into the right doc; citation_span_valid: all checked citations."""
    answered = [r.answer for r in results
                if r.item.answerable and r.answer and not r.answer.reply.refused]
    cited = [c for a in answered if a for c in a.citations]
    checked = [c for r in results if r.answer for c in r.answer.citations if c.span_valid is not None]
    return {
        "citation_doc_correct": share(sum(any(c.right_doc for c in a.citations) for a in answered if a),
                                      len(answered)),
        "citation_doc_share": share(sum(bool(c.right_doc) for c in cited), len(cited)),
        "citation_span_valid": share(sum(bool(c.span_valid) for c in checked), len(checked)),
        "citations": sum(len(r.answer.citations) for r in results if r.answer),
    }


def latency_metrics(results: Sequence[QuestionResult]) -> dict[str, float | None]:
    """Answer and first-token times (s), search time (ms), prompt tokens of answers that reached the
    model (a refusal before generation reports 0 and would hide the real cost)."""
    replies = [r.answer.reply for r in results if r.answer]
    searches = [r.retrieval.search_ms for r in results if r.retrieval]
    answer_s = [rep.answer_s for rep in replies]
    ttft = [rep.ttft_s for rep in replies if rep.ttft_s is not None]
    tokens = [float(rep.prompt_tokens) for rep in replies if rep.prompt_tokens]
    return {
        "answer_p50_s": percentile(answer_s, 0.5),
        "answer_p95_s": percentile(answer_s, 0.95),
        "ttft_p50_s": percentile(ttft, 0.5),
        "ttft_p95_s": percentile(ttft, 0.95),
        "search_p50_ms": percentile(searches, 0.5),
        "search_p95_ms": percentile(searches, 0.95),
        "prompt_tokens_mean": mean(tokens),
        "prompt_tokens_p50": percentile(tokens, 0.5),
    }


def count_metrics(results: Sequence[QuestionResult]) -> dict[str, int]:
    answerable = sum(r.item.answerable for r in results)
    return {"questions": len(results), "answerable": answerable, "unanswerable": len(results) - answerable,
            "errors": sum(bool(r.error) for r in results)}


def compute_metrics(results: Sequence[QuestionResult], asked: bool = True) -> dict[str, float | None]:
    """All metrics in one flat dict; those a run did not measure are ``None`` (with ``asked`` false, a
    no-LLM run, every answer metric: its zeros would read as a broken model)."""
    answers = {**answer_metrics(results), **loss_metrics(results), **type_metrics(results),
               **citation_metrics(results)}
    metrics = {**count_metrics(results), **retrieval_metrics(results), **answers, **latency_metrics(results)}
    if not asked:
        metrics.update({name: None for name in answers})
    return metrics
