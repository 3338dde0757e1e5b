"""Evaluate: run the gold set (``eval/gold.jsonl``) against the service, in process or over HTTP, and
measure retrieval, answers, citations and latency. Behind ``rag eval``.

``run_eval`` writes ``summary.json``, ``report.md`` and ``results.jsonl`` into an output folder and returns
the summary; ``check_thresholds`` turns a summary into the list of CI gate failures. The metric functions
are pure so they can be tested on hand-made results.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import httpx
import opencc
from tqdm import tqdm

from rag.config import Settings
from rag.errors import NotReady, RagError
from rag.types import Answer, Citation, Hit

log = logging.getLogger(__name__)

# A CPU model can take minutes on a long answer; connecting should still fail fast.
HTTP_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
# Statuses that mean every question will fail the same way (wrong URL or key): stop instead of recording.
_FATAL_STATUSES = {401, 403, 404, 405}
_ANSWER_CELL_CHARS = 80
_QUESTION_CELL_CHARS = 50
_SPANS_PER_CELL = 3


class EvalError(RagError):
    """The evaluation could not run."""

    type = "eval_error"


class GoldFormatError(EvalError):
    """The gold set is malformed."""


class QuestionFailed(RagError):
    """One question could not be evaluated; the run records it and goes on."""


# --- gold set -------------------------------------------------------------------------------------------


SPLITS = ("dev", "test")  # tune on dev; report on test, which nothing was chosen on
# fact: a name or term; quantity: a number, date or rank; list: several items, ``must`` holds every one;
# entity: who/which/where; unanswerable: the corpus lacks the answer; followup: needs the earlier turns;
# adversarial: a document tries to steer the answer.
TYPES = ("fact", "quantity", "list", "entity", "unanswerable", "followup", "adversarial")
_NO_ANSWER_TYPES = ("unanswerable", "followup", "adversarial")  # the types that may have ``doc: null``
ROLES = ("user", "assistant")


@dataclass(frozen=True)
class GoldItem:
    """One gold question. ``doc`` is a document id or its leading part; ``None`` means unanswerable.
    ``must``: groups of alternatives; a correct answer contains one string of every group. ``must_not``:
    strings no answer may contain (what an injected instruction asks for). ``history``: the earlier turns
    of a conversation, ``(role, content)`` pairs sent before the question."""

    id: str
    question: str
    doc: str | None
    must: tuple[tuple[str, ...], ...]
    split: str = "dev"
    type: str = "fact"
    history: tuple[tuple[str, str], ...] = ()
    must_not: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return self.doc is not None

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat messages sent for this question: the earlier turns, then the question."""
        return [{"role": role, "content": content} for role, content in self.history] + [
            {"role": "user", "content": self.question}]

    @property
    def search_query(self) -> str:
        """What retrieval metrics search for: the question, after the last earlier user turn if any."""
        users = [content for role, content in self.history if role == "user"]
        return f"{users[-1]} {self.question}" if users else self.question


def load_gold(path: Path | str) -> list[GoldItem]:
    """Read a gold JSONL file (blank lines skipped); raise ``GoldFormatError`` naming file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldFormatError(f"{path}: cannot read the gold set: {exc}") from exc
    items: list[GoldItem] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item = _parse_gold_line(line, f"{path}:{lineno}")
        if item.id in seen:
            raise GoldFormatError(f"{path}:{lineno}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise GoldFormatError(f"{path}: the gold set has no questions")
    return items


def _parse_gold_line(line: str, where: str) -> GoldItem:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise GoldFormatError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(raw, dict):
        raise GoldFormatError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    for key in ("id", "question"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise GoldFormatError(f"{where}: {key!r} must be a non-empty string, got {raw.get(key)!r}")
    doc = raw.get("doc")
    if doc is not None and (not isinstance(doc, str) or not doc.strip()):
        raise GoldFormatError(f"{where}: 'doc' must be a document id or null, got {doc!r}")
    split = raw.get("split", "dev")
    if split not in SPLITS:
        raise GoldFormatError(f"{where}: 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    kind = raw.get("type", "fact" if doc is not None else "unanswerable")
    if kind not in TYPES:
        raise GoldFormatError(f"{where}: 'type' must be one of {', '.join(TYPES)}, got {kind!r}")
    if doc is None and kind not in _NO_ANSWER_TYPES:
        raise GoldFormatError(f"{where}: a {kind} question needs a 'doc'; only {', '.join(_NO_ANSWER_TYPES)} "
                              "questions may have none")
    if kind == "unanswerable" and doc is not None:
        raise GoldFormatError(f"{where}: an unanswerable question has 'doc': null, got {doc!r}")
    history = _parse_history(raw.get("history", []), where)
    if kind == "followup" and not history:
        raise GoldFormatError(f"{where}: a followup question needs its earlier turns in 'history'")
    must_not = raw.get("must_not", [])
    if not isinstance(must_not, list) or not all(isinstance(s, str) and normalize(s) for s in must_not):
        raise GoldFormatError(f"{where}: 'must_not' must be a list of non-empty strings, got {must_not!r}")
    return GoldItem(id=raw["id"], question=raw["question"], doc=doc, must=_parse_must(raw.get("must", []), where),
                    split=split, type=kind, history=history, must_not=tuple(must_not))


def _parse_history(history: Any, where: str) -> tuple[tuple[str, str], ...]:
    """Earlier turns: alternating user and assistant messages, starting with the user, ending with the
    assistant (the question itself is the next user turn)."""
    message = (f"{where}: 'history' must be a list of {{\"role\": \"user\"|\"assistant\", \"content\": text}} "
               f"alternating from user to assistant, got {history!r}")
    if not isinstance(history, list) or len(history) % 2:
        raise GoldFormatError(message)
    turns = []
    for i, turn in enumerate(history):
        if not isinstance(turn, dict) or turn.get("role") != ROLES[i % 2]:
            raise GoldFormatError(message)
        if not isinstance(turn.get("content"), str) or not turn["content"].strip():
            raise GoldFormatError(message)
        turns.append((turn["role"], turn["content"]))
    return tuple(turns)


def _parse_must(must: Any, where: str) -> tuple[tuple[str, ...], ...]:
    message = f"{where}: 'must' must be a list of non-empty lists of non-empty strings, got {must!r}"
    if not isinstance(must, list):
        raise GoldFormatError(message)
    groups = []
    for group in must:
        if not isinstance(group, list) or not group:
            raise GoldFormatError(message)
        if not all(isinstance(s, str) and normalize(s) for s in group):
            raise GoldFormatError(message)
        short = [s for s in group if len(normalize(s)) < 2]
        if short:  # "3" or "八" is found in almost any answer: it cannot tell right from wrong
            raise GoldFormatError(f"{where}: single-character 'must' value {short[0]!r}: write the unit or the "
                                  "context (\"3所\", \"第三\")")
        groups.append(tuple(group))
    return tuple(groups)


def select_items(items: Sequence[GoldItem], ids: Iterable[str] | None = None,
                 limit: int | None = None, split: str | None = None) -> list[GoldItem]:
    """The items of ``split`` whose id is in ``ids`` (gold order kept), then the first ``limit``; unknown ids
    raise."""
    selected = [item for item in items if split is None or item.split == split]
    if ids is not None:
        wanted = set(ids)
        unknown = sorted(wanted - {item.id for item in items})
        if unknown:
            raise EvalError(f"ids not in the gold set: {', '.join(unknown)}")
        selected = [item for item in selected if item.id in wanted]
    return selected if limit is None else selected[:limit]


# --- matching -------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    return str(_t2s().convert(text))


_WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """``text`` in Simplified script with all whitespace removed: the form answers are matched in."""
    return _WHITESPACE.sub("", to_simplified(text))


def is_correct(answer_text: str, must: Sequence[Sequence[str]]) -> bool:
    """True when every ``must`` group has at least one of its strings in the answer (both normalized)."""
    answer = normalize(answer_text)
    return all(any(normalize(s) in answer for s in group) for group in must)


def says_any(answer_text: str, forbidden: Sequence[str]) -> bool:
    """True when the answer contains any of the ``forbidden`` strings (both normalized)."""
    answer = normalize(answer_text)
    return any(normalize(s) in answer for s in forbidden)


def doc_matches(doc_id: str, expected: str) -> bool:
    """Gold ``doc`` may be the leading part of the id (e.g. without the extension)."""
    return doc_id.startswith(expected)


def doc_rank(doc_ids: Sequence[str], expected: str) -> int | None:
    """1-based rank of the first id from the expected document, or ``None`` when none is."""
    return next((i for i, doc_id in enumerate(doc_ids, start=1) if doc_matches(doc_id, expected)), None)


# --- what the evaluator sees of the service --------------------------------------------------------------


class Service(Protocol):
    """The part of ``rag.service.RagService`` the evaluator uses."""

    def search(self, query: str, top_k: int = 5, doc_ids: list[str] | None = None) -> list[Hit]: ...

    def answer(self, messages: list[dict[str, str]], max_tokens: int | None = None,
               temperature: float | None = None) -> Answer: ...

    def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str | Answer]: ...


@dataclass(frozen=True)
class Passage:
    """One retrieved passage: where it is and its text in Simplified script."""

    doc_id: str
    start: int
    end: int
    simplified: str
    score: float


@dataclass(frozen=True)
class Reply:
    """A streamed answer as received. ``ttft_s``: seconds to the first text delta, or to the end when
    nothing was streamed before it; ``prompt_tokens`` is ``None`` when the server did not report usage."""

    text: str
    citations: tuple[Citation, ...]
    refused: bool
    prompt_tokens: int | None
    answer_s: float
    ttft_s: float | None
    reason: str | None = None  # the check that refused (``Answer.reason``); ``None`` when not reported


class Backend(Protocol):
    def search(self, query: str, k: int) -> list[Passage]: ...

    def ask(self, messages: list[dict[str, str]]) -> Reply: ...


class InProcessBackend:
    """Calls a ``RagService`` directly; streams so time to first token is measured."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def search(self, query: str, k: int) -> list[Passage]:
        return [Passage(h.chunk.doc_id, h.chunk.start, h.chunk.end, h.chunk.simplified, h.score)
                for h in self._service.search(query, top_k=k)]

    def ask(self, messages: list[dict[str, str]]) -> Reply:
        started = time.perf_counter()
        ttft: float | None = None
        final: Answer | None = None
        for item in self._service.stream(messages):
            if isinstance(item, Answer):
                final = item
            elif item and ttft is None:
                ttft = time.perf_counter() - started
        elapsed = time.perf_counter() - started
        if final is None:
            raise QuestionFailed("the service's stream ended without a final Answer")
        return Reply(final.text, tuple(final.citations), final.refused, final.prompt_tokens, elapsed,
                     ttft if ttft is not None else elapsed, final.reason or None)


class HttpBackend:
    """Uses only the public HTTP API: ``/v1/search`` and streaming ``/v1/chat/completions``."""

    def __init__(self, client: httpx.Client, url: str, api_key: str | None = None) -> None:
        self._client = client
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def search(self, query: str, k: int) -> list[Passage]:
        with self._request("/v1/search", {"query": query, "top_k": k}) as response:
            response.read()
            try:
                results = response.json()["results"]
                return [Passage(r["doc_id"], int(r["start"]), int(r["end"]), to_simplified(r["text"]),
                                float(r.get("score", 0.0))) for r in results]
            except (ValueError, KeyError, TypeError) as exc:
                raise QuestionFailed(f"unexpected /v1/search response: {exc!r}") from exc

    def ask(self, messages: list[dict[str, str]]) -> Reply:
        body = {"model": "rag", "messages": messages, "stream": True}
        started = time.perf_counter()
        ttft: float | None = None
        parts: list[str] = []
        final: dict[str, Any] = {}
        with self._request("/v1/chat/completions", body) as response:
            for event in parse_sse(response.iter_lines()):
                delta = _delta_content(event)
                if delta and ttft is None:
                    ttft = time.perf_counter() - started
                parts.append(delta)
                final.update({key: event[key] for key in ("citations", "refused", "usage", "reason") if key in event})
        elapsed = time.perf_counter() - started
        usage = final.get("usage") or {}
        return Reply("".join(parts), _parse_citations(final.get("citations") or []),
                     bool(final.get("refused", False)), usage.get("prompt_tokens"), elapsed,
                     ttft if ttft is not None else elapsed, final.get("reason") or None)

    @contextmanager
    def _request(self, path: str, body: dict[str, Any]) -> Iterator[httpx.Response]:
        url = f"{self._url}{path}"
        try:
            with self._client.stream("POST", url, json=body, headers=self._headers) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_status(url, response)
                yield response
        except httpx.TimeoutException as exc:
            raise QuestionFailed(f"{url}: timed out ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise EvalError(f"cannot reach {url}: {exc!r}") from exc


def _raise_for_status(url: str, response: httpx.Response) -> None:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    text = f"{url}: HTTP {response.status_code}: {message}"
    raise EvalError(text) if response.status_code in _FATAL_STATUSES else QuestionFailed(text)


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of ``data:`` lines up to ``data: [DONE]``; an error event raises."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError as exc:
            raise QuestionFailed(f"bad server-sent event: {data[:100]!r}") from exc
        if isinstance(event, dict) and "error" in event:
            raise QuestionFailed(f"error event in stream: {event['error']}")
        yield event


def _delta_content(event: dict[str, Any]) -> str:
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def _parse_citations(raw: list[dict[str, Any]]) -> tuple[Citation, ...]:
    try:
        return tuple(Citation(c["doc_id"], int(c["start"]), int(c["end"]), c["text"], c.get("section", ""))
                     for c in raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise QuestionFailed(f"malformed citations in the final chunk: {exc!r}") from exc


# --- citation spans ---------------------------------------------------------------------------------------


Reader = Callable[[Path, str], str]
Cleaner = Callable[[str], str]


def _read_utf8(path: Path, _doc_id: str) -> str:
    return path.read_text(encoding="utf-8")


def default_span_functions() -> tuple[Reader, Cleaner | None]:
    """``rag.formats``' reader (plain UTF-8 when it is missing) and ``rag.normalize.clean`` (``None``
    when missing: without the ingest cleaner a span cannot be re-derived, so it is not checked)."""
    reader: Reader = _read_utf8
    try:
        read_document = importlib.import_module("rag.formats").read_document
    except ImportError:
        log.warning("rag.formats is not importable; reading cited files as plain UTF-8")
    else:
        def reader(path: Path, doc_id: str) -> str:
            return str(read_document(path, doc_id).text)
    try:
        cleaner: Cleaner | None = importlib.import_module("rag.normalize").clean
    except ImportError:
        log.warning("rag.normalize is not importable; citation spans will not be checked")
        cleaner = None
    return reader, cleaner


class SpanChecker:
    """Re-reads cited files under the corpus folder and checks ``clean(original[start:end]) == text``."""

    def __init__(self, corpus_dir: Path, reader: Reader, cleaner: Cleaner | None) -> None:
        self._root = corpus_dir.resolve()
        self._reader = reader
        self._cleaner = cleaner
        self._texts: dict[str, str | Exception] = {}  # a run cites the same few files again and again

    def check(self, citation: Citation) -> tuple[bool | None, str]:
        """``(valid, problem)``; ``valid`` is ``None`` when spans cannot be checked in this setup."""
        if self._cleaner is None:
            return None, "not checked"
        text = self._text(citation.doc_id)
        if isinstance(text, Exception):
            return False, f"unreadable: {text}"
        if not 0 <= citation.start < citation.end <= len(text):
            return False, f"span outside the file (length {len(text)})"
        if self._cleaner(text[citation.start:citation.end]) != citation.text:
            return False, "text differs from the file"
        return True, ""

    def _text(self, doc_id: str) -> str | Exception:
        if doc_id not in self._texts:
            self._texts[doc_id] = self._read(doc_id)
        return self._texts[doc_id]

    def _read(self, doc_id: str) -> str | Exception:
        path = (self._root / doc_id).resolve()
        if not path.is_relative_to(self._root):  # a doc id from a server must not read outside the corpus
            return EvalError(f"{doc_id} is outside {self._root}")
        try:
            return self._reader(path, doc_id)
        except (OSError, UnicodeDecodeError, RagError) as exc:
            return exc


# --- per-question results ------------------------------------------------------------------------------


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
    """``correct``: the right answer (not refused) for answerable questions, a refusal otherwise."""

    reply: Reply
    correct: bool
    citations: tuple[CitationCheck, ...]


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


def evaluate_question(backend: Backend, item: GoldItem, k: int, asked: bool,
                      checker: SpanChecker) -> QuestionResult:
    """Search (answerable questions) and answer (unless ``asked`` is false) one gold question."""
    retrieval: RetrievalOutcome | None = None
    answer: AnswerOutcome | None = None
    try:
        if item.doc is not None:
            retrieval = _retrieve(backend, item, item.doc, k)
        if asked:
            answer = _answer(backend, item, checker)
    except (EvalError, NotReady):  # no index or models: every question would fail the same way
        raise
    except RagError as exc:  # one bad question (busy, timeout, odd reply) should not lose the run
        log.warning("question %s failed: %s", item.id, exc)
        return QuestionResult(item, retrieval, answer, error=str(exc))
    return QuestionResult(item, retrieval, answer)


def _retrieve(backend: Backend, item: GoldItem, expected: str, k: int) -> RetrievalOutcome:
    started = time.perf_counter()
    passages = tuple(backend.search(item.search_query, k)[:k])
    search_ms = (time.perf_counter() - started) * 1000
    rank = doc_rank([p.doc_id for p in passages], expected)
    evidence = is_correct("".join(p.simplified for p in passages), item.must)
    return RetrievalOutcome(passages, rank, evidence, search_ms)


def _answer(backend: Backend, item: GoldItem, checker: SpanChecker) -> AnswerOutcome:
    reply = backend.ask(item.messages)
    # An unanswerable question is answered correctly only by refusing; no answer may say what it must not.
    correct = reply.refused if item.doc is None else not reply.refused and is_correct(reply.text, item.must)
    correct = correct and not says_any(reply.text, item.must_not)
    checks = tuple(_check_citation(c, item.doc, checker) for c in reply.citations)
    return AnswerOutcome(reply, correct, checks)


def _check_citation(citation: Citation, expected: str | None, checker: SpanChecker) -> CitationCheck:
    right_doc = None if expected is None else doc_matches(citation.doc_id, expected)
    valid, problem = checker.check(citation)
    return CitationCheck(citation, right_doc, valid, problem)


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
    answers = {**answer_metrics(results), **citation_metrics(results)}
    metrics = {**count_metrics(results), **retrieval_metrics(results), **answers, **latency_metrics(results)}
    if not asked:
        metrics.update({name: None for name in answers})
    return metrics


# --- running ----------------------------------------------------------------------------------------------


def run_eval(settings: Settings, gold_path: Path | str, out_dir: Path | str, *, url: str | None = None,
             api_key: str | None = None, no_llm: bool = False, limit: int | None = None,
             ids: Sequence[str] | None = None, k: int = 5, progress: bool = True,
             client: httpx.Client | None = None, service: Service | None = None,
             split: str | None = None) -> dict[str, Any]:
    """Evaluate the gold set and write ``summary.json``, ``report.md`` and ``results.jsonl`` into
    ``out_dir``; return the summary. HTTP mode when ``url`` or ``client`` is given, else in process
    (``service``, or ``rag.service.build_service(settings)``)."""
    _check_args(k, limit)
    gold_path = Path(gold_path)
    items = select_items(load_gold(gold_path), ids, limit, split)
    if not items:
        raise EvalError("no questions selected: --ids and --split matched none")
    checker = SpanChecker(settings.corpus_dir, *default_span_functions())
    http = url is not None or client is not None
    started = time.perf_counter()
    with _open_backend(settings, url, api_key, client, service, no_llm) as backend:
        results = [evaluate_question(backend, item, k, not no_llm, checker)
                   for item in tqdm(items, desc="rag eval", unit="q", disable=not progress)]
    summary = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "http" if http else "in-process", "url": url, "no_llm": no_llm, "k": k,
        "gold": {"path": str(gold_path), "sha256": hashlib.sha256(gold_path.read_bytes()).hexdigest()},
        "limit": limit, "ids": list(ids) if ids is not None else None, "split": split,
        "question_ids": [item.id for item in items],
        "duration_s": round(time.perf_counter() - started, 3),
        "metrics": compute_metrics(results, asked=not no_llm),
        "settings": _settings_snapshot(settings),
    }
    write_outputs(Path(out_dir), summary, results)
    log.info("eval: %d questions in %.1f s, written to %s", len(items), summary["duration_s"], out_dir)
    return summary


def _check_args(k: int, limit: int | None) -> None:
    if k < 1:
        raise EvalError(f"k must be at least 1. Currently, k is {k}")
    if limit is not None and limit < 1:
        raise EvalError(f"limit must be at least 1. Currently, limit is {limit}")


@contextmanager
def _open_backend(settings: Settings, url: str | None, api_key: str | None, client: httpx.Client | None,
                  service: Service | None, no_llm: bool) -> Iterator[Backend]:
    if url is not None or client is not None:
        if client is not None:
            yield HttpBackend(client, url or "", api_key)
            return
        with httpx.Client(timeout=HTTP_TIMEOUT) as owned:
            yield HttpBackend(owned, url or "", api_key)
        return
    yield InProcessBackend(service or _build_service(settings, no_llm))


def _build_service(settings: Settings, no_llm: bool) -> Service:
    build_service = importlib.import_module("rag.service").build_service
    if no_llm:  # retrieval only: do not spend time and memory loading the GGUF model
        settings = settings.model_copy(update={"llm_backend": "fake"})
    service: Service = build_service(settings)
    return service


def _settings_snapshot(settings: Settings) -> dict[str, Any]:
    snapshot = settings.model_dump(mode="json")
    if snapshot.get("api_key"):
        snapshot["api_key"] = "***"  # summaries get shared; never write the key
    return snapshot


# --- output -----------------------------------------------------------------------------------------------


def write_outputs(out_dir: Path, summary: dict[str, Any], results: Sequence[QuestionResult]) -> None:
    """Write ``summary.json``, ``results.jsonl`` (one raw record per question) and ``report.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
                                          encoding="utf-8")
    asked = not summary["no_llm"]
    with (out_dir / "results.jsonl").open("w", encoding="utf-8") as f:
        for result in results:
            record = {**asdict(result), "verdict": verdict(result, asked)}
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
}


def render_report(summary: dict[str, Any], results: Sequence[QuestionResult]) -> str:
    """The Markdown report: run facts, a metrics table, then one row per question."""
    asked = not summary["no_llm"]
    lines = [
        "# rag eval report", "",
        f"- time: {summary['timestamp']}", f"- mode: {summary['mode']}"
        + (f" ({summary['url']})" if summary["url"] else "") + (", no LLM" if not asked else ""),
        f"- gold: {summary['gold']['path']}, k = {summary['k']}", "",
        "| metric | name | value |", "|---|---|---|",
    ]
    lines += [f"| {_METRIC_LABELS.get(name, name)} | `{name}` | {_format_value(value)} |"
              for name, value in summary["metrics"].items()]
    lines += ["", "## Questions", "",
              "| id | question | expected doc | rank | answer | cited spans | verdict | timings |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [_report_row(result, asked) for result in results]
    return "\n".join(lines) + "\n"


def _report_row(result: QuestionResult, asked: bool) -> str:
    item, retrieval, answer = result.item, result.retrieval, result.answer
    rank = "—" if retrieval is None else (str(retrieval.rank) if retrieval.rank else "miss")
    answer_cell = answer.reply.text if answer else ""
    if result.error:
        answer_cell = f"error: {result.error}"
    cells = [item.id, _truncate(item.question, _QUESTION_CELL_CHARS), item.doc or "— (unanswerable)", rank,
             _truncate(answer_cell, _ANSWER_CELL_CHARS), _spans_cell(answer), verdict(result, asked),
             _timings_cell(result)]
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


# --- thresholds -------------------------------------------------------------------------------------------


def load_thresholds(path: Path | str) -> dict[str, Any]:
    """Read and validate a thresholds file (``retrieval``, ``full``, ``full_subset_ids``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvalError(f"{path}: cannot read thresholds: {exc}") from exc
    if not isinstance(data, dict):
        raise EvalError(f"{path}: expected a JSON object")
    for section in ("retrieval", "full"):
        if not isinstance(data.get(section, {}), dict):
            raise EvalError(f"{path}: {section!r} must be an object of metric thresholds")
        for name, spec in data.get(section, {}).items():
            _bounds(name, spec)
    subset = data.get("full_subset_ids", [])
    if not isinstance(subset, list) or not all(isinstance(i, str) for i in subset):
        raise EvalError(f"{path}: 'full_subset_ids' must be a list of question ids")
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
    """The run must cover what its thresholds were measured on, or passing the gate means nothing."""
    if section == "retrieval" and (summary.get("limit") is not None or summary.get("ids") is not None):
        return ["retrieval thresholds apply to the whole gold set, but this run used --limit or --ids"]
    subset = thresholds.get("full_subset_ids") or []
    if section == "full" and subset and sorted(summary.get("question_ids", [])) != sorted(subset):
        return [f"full thresholds apply to the {len(subset)} questions of full_subset_ids, but this run "
                f"covered {len(summary.get('question_ids', []))} other or different questions"]
    return []


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
