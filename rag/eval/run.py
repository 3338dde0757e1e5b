"""Run the gold set against the service and write ``summary.json``, ``report.md`` and ``results.jsonl``."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from rag.config import Settings
from rag.errors import NotReady, RagError
from rag.eval.backends import HTTP_TIMEOUT, Backend, HttpBackend, InProcessBackend, Service
from rag.eval.baseline import beside, write_peer
from rag.eval.gold import (
    SPLITS,
    EvalError,
    GoldItem,
    doc_matches,
    doc_rank,
    is_correct,
    is_right,
    load_gold,
    select_items,
)
from rag.eval.metrics import AnswerOutcome, CitationCheck, QuestionResult, RetrievalOutcome, compute_metrics
from rag.eval.report import write_outputs
from rag.eval.spans import SpanChecker, default_span_functions
from rag.parts import Parts
from rag.types import Citation

log = logging.getLogger(__name__)


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
    correct = is_right(reply.text, reply.refused, reply.citations, item)
    checks = tuple(_check_citation(c, item.doc, checker) for c in reply.citations)
    shown = None if item.doc is None or reply.context is None else is_correct("\n".join(reply.context), item.must)
    return AnswerOutcome(reply, correct, checks, shown)


def _check_citation(citation: Citation, expected: str | None, checker: SpanChecker) -> CitationCheck:
    right_doc = None if expected is None else doc_matches(citation.doc_id, expected)
    valid, problem = checker.check(citation)
    return CitationCheck(citation, right_doc, valid, problem)


def run_eval(settings: Settings, gold_path: Path | str, out_dir: Path | str, *, url: str | None = None,
             api_key: str | None = None, no_llm: bool = False, limit: int | None = None,
             ids: Sequence[str] | None = None, k: int = 5, progress: bool = True,
             client: httpx.Client | None = None, service: Service | None = None,
             split: str | None = None, parts: Parts | None = None, baseline: bool = False) -> dict[str, Any]:
    """Evaluate the gold set and write ``summary.json``, ``report.md`` and ``results.jsonl`` into
    ``out_dir``; return the summary. HTTP mode when ``url`` or ``client`` is given, else in process
    (``service``, or one built from ``settings`` and ``parts``; with ``no_llm``, without a generator).
    With ``baseline`` (in process only), each question is asked of the naive baseline right after the
    service; its files go to ``out_dir/baseline`` and its metrics to the summary's ``baseline``."""
    _check_args(k, limit)
    gold_path = Path(gold_path)
    items = select_items(load_gold(gold_path), ids, limit, split)
    if not items:
        raise EvalError("no questions selected: --ids and --split matched none")
    checker = SpanChecker(settings.corpus_dir, *default_span_functions())
    http = url is not None or client is not None
    started = time.perf_counter()
    if baseline and (http or no_llm):
        raise EvalError("the baseline runs in process, with the model: drop --url and --no-llm")
    if baseline and service is None:
        from rag.service import build_service

        service = build_service(settings, parts)
    peer = beside(service, settings, parts or Parts()) if baseline and service is not None else None
    results: list[QuestionResult] = []
    peers: list[QuestionResult] = []
    with _open_backend(settings, url, api_key, client, service, parts, no_llm) as backend:
        for item in tqdm(items, desc="rag eval", unit="q", disable=not progress):
            results.append(evaluate_question(backend, item, k, not no_llm, checker))
            if peer is not None:  # back to back, so each row has its peer from the same moment
                peers.append(evaluate_question(peer, item, k, True, checker))
    summary = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "http" if http else "in-process", "url": url, "no_llm": no_llm, "k": k,
        "gold": {"path": str(gold_path), "sha256": hashlib.sha256(gold_path.read_bytes()).hexdigest()},
        "limit": limit, "ids": list(ids) if ids is not None else None, "split": split,
        "question_ids": [item.id for item in items],
        "duration_s": round(time.perf_counter() - started, 3),
        "metrics": compute_metrics(results, asked=not no_llm),
        "by_split": {name: compute_metrics([r for r in results if r.item.split == name], asked=not no_llm)
                     for name in SPLITS if any(r.item.split == name for r in results)},
        "settings": _settings_snapshot(settings),
    }
    if peer is not None:
        summary["baseline"] = write_peer(Path(out_dir) / "baseline", summary, peers)
    write_outputs(Path(out_dir), summary, results)
    log.info("eval: %d questions in %.1f s, written to %s", len(items), summary["duration_s"], out_dir)
    return summary


def run_adversarial(settings: Settings, cases_dir: Path | str, out_dir: Path | str, *, k: int = 5,
                    progress: bool = True, service: Service | None = None,
                    parts: Parts | None = None) -> dict[str, Any]:
    """Run the adversarial set: ingest ``cases_dir/docs`` into a temporary corpus and index of their own
    (never ``corpus/`` nor the configured index), then evaluate ``cases_dir/cases.jsonl`` against them."""
    cases_dir = Path(cases_dir)
    if not (cases_dir / "docs").is_dir() or not (cases_dir / "cases.jsonl").is_file():
        raise EvalError(f"{cases_dir}: an adversarial set needs docs/ and cases.jsonl")
    with tempfile.TemporaryDirectory(prefix="rag-adversarial-") as tmp:
        corpus = Path(tmp) / "corpus"
        shutil.copytree(cases_dir / "docs", corpus)
        isolated = settings.model_copy(update={"corpus_dir": corpus, "index_dir": Path(tmp) / "index"})
        if service is None:
            _ingest(isolated, parts or Parts())
        return run_eval(isolated, cases_dir / "cases.jsonl", out_dir, k=k, progress=progress, service=service,
                        parts=parts)


def _ingest(settings: Settings, parts: Parts) -> None:
    """Index ``settings.corpus_dir`` as ``rag ingest --rebuild`` does."""
    from rag.index.writer import IndexWriter, LocalIndex

    report = IndexWriter(settings, parts.embedder(settings), LocalIndex()).ingest([settings.corpus_dir], rebuild=True)
    log.info("adversarial index: %s", report.summary())


def _check_args(k: int, limit: int | None) -> None:
    if k < 1:
        raise EvalError(f"k must be at least 1. Currently, k is {k}")
    if limit is not None and limit < 1:
        raise EvalError(f"limit must be at least 1. Currently, limit is {limit}")


@contextmanager
def _open_backend(settings: Settings, url: str | None, api_key: str | None, client: httpx.Client | None,
                  service: Service | None, parts: Parts | None, no_llm: bool) -> Iterator[Backend]:
    if url is not None or client is not None:
        if client is not None:
            yield HttpBackend(client, url or "", api_key)
            return
        with httpx.Client(timeout=HTTP_TIMEOUT) as owned:
            yield HttpBackend(owned, url or "", api_key)
        return
    if service is None:
        from rag.service import build_service  # the models load only for an in-process run

        # retrieval only: no generator is built, so the GGUF model costs neither time nor memory
        service = build_service(settings, parts, generate=not no_llm)
    yield InProcessBackend(service)


def _settings_snapshot(settings: Settings) -> dict[str, Any]:
    snapshot = settings.model_dump(mode="json")
    for key in ("api_key", "llm_api_key", "qdrant_api_key"):
        if snapshot.get(key):
            snapshot[key] = "***"  # summaries get shared; never write a key
    return snapshot
