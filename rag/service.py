"""The question-answering service: retrieve → prompt → generate → cite, plus live document management.

Refusal rests on evidence, not only on the model's word: before generation the question's content terms
(weighted by rarity) must be found in a retrieved passage or its document, and the best passage must be
similar enough; after generation, an answer with invented numbers or no supporting sentence is refused.
"""

from __future__ import annotations

import collections.abc as abc
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rag import cite as citing
from rag import prompt as prompting
from rag.config import Settings
from rag.embed import CachedEmbedder, Embedder, build_embedder
from rag.errors import InvalidRequest, NotFound, NotReady
from rag.evidence import EvidenceJudge
from rag.formats import page_span
from rag.generate import Completion, GenerationSlots, Generator, build_generator
from rag.index import DocRecord, Index
from rag.ingest import open_index
from rag.normalize import to_simplified, to_traditional
from rag.question import Question, analyse
from rag.retrieve import RetrievalConfig, search
from rag.types import Answer, Citation, Hit, Sentence
from rag.writer import IndexWriter
from rag.writer import sanitize_name as sanitize_name  # re-exported: part of this module's API

log = logging.getLogger(__name__)

ROLES = frozenset({"system", "user", "assistant"})
_FOLLOW_UP = re.compile(r"^(那|那么|还有|另外|此外|它|其)|呢[？?]?$")


@dataclass(frozen=True)
class Plan:
    """What ``prepare`` decided: a refusal reason, or the sentences and chat messages for the model."""

    question: str
    traditional: bool
    index: Index
    hits: list[Hit]
    chosen: list[Sentence]
    chat: list[dict[str, str]]
    refusal: str
    titles: str = ""
    analysis: Question | None = None


class ScriptWriter:
    """Converts streamed text to the question's script. Converting piece by piece would split phrases
    (布局 → 佈局), so it converts the whole text so far and holds back the last few characters."""

    HOLD = 3

    def __init__(self, convert: Callable[[str], str]) -> None:
        self._convert = convert
        self._raw = ""
        self._sent = 0

    def feed(self, delta: str) -> str:
        self._raw += delta
        out = self._convert(self._raw.lstrip())
        stable = max(len(out) - self.HOLD, self._sent)
        piece, self._sent = out[self._sent:stable], stable
        return piece

    def flush(self) -> str:
        out = self._convert(self._raw.strip())
        piece, self._sent = out[self._sent:], len(out)
        return piece


class RagService:
    """Holds the models and the live index; up to ``RAG_MAX_PARALLEL_GENERATIONS`` generations run at once."""

    def __init__(self, settings: Settings, embedder: Embedder, generator: Generator, index: Index | None) -> None:
        self.settings = settings
        self.embedder = embedder
        self.generator = generator
        self._index = index
        self.templates = prompting.Templates.load(settings.prompts_dir)
        self.generation_lock = GenerationSlots(settings.parallel_generations)
        self._judge_cache: tuple[Index, EvidenceJudge] | None = None
        self.sentence_embedder = CachedEmbedder(embedder)
        if index is not None:
            index.check_embedder(embedder.name, embedder.dim)
        self.writer = IndexWriter(settings, embedder, self)

    # --- index -------------------------------------------------------------------------------------
    @property
    def index(self) -> Index:
        if self._index is None:
            raise NotReady("no index is loaded; ingest documents first (`rag ingest` or POST /v1/documents)")
        return self._index

    @property
    def ready(self) -> bool:
        return self._index is not None

    def documents(self) -> list[DocRecord]:
        return list(self._index.documents.values()) if self._index else []

    def document_text(self, doc_id: str) -> tuple[DocRecord, str]:
        """A document's record and the text its offsets index."""
        index = self.index
        if doc_id not in index.documents:
            raise NotFound(f"no document {doc_id!r} in the index")
        return index.documents[doc_id], index.sources[doc_id]

    # --- writes (one writer, across processes: ``rag.writer``) ---------------------------------------
    @property
    def loaded_index(self) -> Index | None:
        return self._index

    def swap_index(self, index: Index | None) -> None:
        """Make ``index`` the one requests read: one reference assignment, so readers never wait."""
        if index is not None:
            index.check_embedder(self.embedder.name, self.embedder.dim)
        self._index = index

    def ingest_folder(self, paths: Sequence[Path]) -> None:
        self.writer.ingest(paths)

    def add_document(self, name: str, data: bytes) -> DocRecord:
        """Store an uploaded file in the corpus folder and index it, live."""
        return self.writer.add(self.writer.prepare(name, data), data)

    def delete_document(self, doc_id: str) -> None:
        self.writer.delete(doc_id)

    # --- search ------------------------------------------------------------------------------------
    def retrieval_config(self) -> RetrievalConfig:
        s = self.settings
        return RetrievalConfig(s.fusion, s.rrf_k, s.dense_weight, s.candidates)

    def search(self, query: str, top_k: int = 5, doc_ids: list[str] | None = None) -> list[Hit]:
        if len(query) > self.settings.max_question_chars:
            raise InvalidRequest(f"query has {len(query)} characters; the limit is {self.settings.max_question_chars}")
        index = self.index
        return search(index, analyse(query, self.embedder), top_k, doc_ids, self.retrieval_config())

    # --- answer ------------------------------------------------------------------------------------
    def answer(self, messages: Sequence[dict[str, str]], max_tokens: int | None = None,
               temperature: float | None = None) -> Answer:
        final = None
        for item in self.stream(messages, max_tokens, temperature):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final

    def stream(self, messages: Sequence[dict[str, str]], max_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str | Answer]:
        """Text deltas as the model writes them; the last item is the whole ``Answer``."""
        started = time.perf_counter()
        plan = self.prepare(messages)
        timings = {"retrieve": time.perf_counter() - started}
        if plan.refusal:
            yield self._refusal(plan.traditional, plan.refusal, timings, started)
            return
        completion = yield from self._generate(plan.chat, max_tokens, temperature, plan.traditional, timings,
                                               started)
        yield self._finish(completion, plan, timings, started)

    def prepare(self, messages: Sequence[dict[str, str]]) -> Plan:
        """Everything before generation: retrieval, the evidence verdict, the chosen sentences, the prompt."""
        text, query = self._question(messages)
        index = self.index
        question = analyse(text, self.embedder, query)
        traditional, query_s = question.traditional, question.simplified
        hits = search(index, question, self.settings.context_chunks, config=self.retrieval_config())
        evidence = self._judge(index).assess(hits, query_s)
        if evidence.coverage < self.settings.min_coverage or evidence.best_dense < self.settings.min_dense_score:
            reason = (f"weak evidence: coverage {evidence.coverage:.2f} (missing {'、'.join(evidence.missing)}), "
                      f"dense {evidence.best_dense:.2f}")
            return Plan(text, traditional, index, hits, [], [], reason, analysis=question)
        # Only documents that cover the question may supply evidence: a neighbour's figure is no answer.
        covering = evidence.covering(self.settings.min_coverage)
        hits = [h for h in hits if h.chunk.doc_id in covering]
        titles = {d: index.documents[d].title for d in covering}
        sentences = prompting.candidate_sentences(index, hits)
        # The places and years of the question picked the document; they say nothing about the sentence.
        ranked = prompting.rank_sentences(sentences, query_s, question.vector, self.sentence_embedder, titles,
                                          index.idf, ignore=set(evidence.musts))
        chosen = prompting.select(ranked, self.settings.context_max_chars, self.settings.context_sentences)
        chat = prompting.render(self.templates, chosen, text if query == text else query, titles)
        return Plan(text, traditional, index, hits, chosen, chat, "", "\n".join(titles.values()), question)

    def _generate(self, chat: list[dict[str, str]], max_tokens: int | None, temperature: float | None,
                  traditional: bool, timings: dict[str, float], started: float) -> abc.Generator[str, None, Completion]:
        writer = ScriptWriter(to_traditional if traditional else to_simplified)
        completion: Completion | None = None
        with self.generation_lock:
            for item in self.generator.stream(chat, max_tokens or self.settings.max_tokens,
                                              self.settings.temperature if temperature is None else temperature):
                if isinstance(item, Completion):
                    completion = item
                elif piece := writer.feed(item):
                    timings.setdefault("first_token", time.perf_counter() - started)
                    yield piece
        if piece := writer.flush():
            timings.setdefault("first_token", time.perf_counter() - started)
            yield piece
        assert completion is not None
        return completion

    def _finish(self, completion: Completion, plan: Plan, timings: dict[str, float], started: float) -> Answer:
        chosen, question, traditional = plan.chosen, plan.question, plan.traditional
        text = completion.text.strip()
        reason = ""
        if not text or citing.says_not_found(text):
            reason = "the model found no answer in the passages"
        elif invented := citing.unsupported_numbers(text, chosen, to_simplified(question)):
            reason = f"numbers not in the evidence: {sorted(invented)}"
        elif citing.asks_quantity(question) and not citing.has_quantity(text):
            reason = "the question asks how many but the answer holds no number"
        elif (grounded := citing.grounding(text, question, chosen, plan.titles)) < self.settings.min_grounding:
            reason = f"the answer is not grounded in the evidence ({grounded:.2f})"
        citations = [] if reason else citing.cite(text, chosen, plan.index.sources, question=question)
        citations = [with_pages(c, plan.index) for c in citations]
        if not reason and not citations:
            reason = "no retrieved sentence supports the answer"
        if reason:
            refusal = self._refusal(traditional, reason, timings, started)
            return Answer(refusal.text, (), True, completion.prompt_tokens, completion.completion_tokens, reason,
                          refusal.timings)
        final = to_traditional(text) if traditional else to_simplified(text)
        timings["total"] = time.perf_counter() - started
        return Answer(final, tuple(citations), False, completion.prompt_tokens, completion.completion_tokens, "",
                      timings)

    def _refusal(self, traditional: bool, reason: str, timings: dict[str, float], started: float) -> Answer:
        log.info("refused: %s", reason)
        timings["total"] = time.perf_counter() - started
        text = self.templates.refusal
        return Answer(to_traditional(text) if traditional else text, (), True, 0, 0, reason, timings)

    def _question(self, messages: Sequence[dict[str, str]]) -> tuple[str, str]:
        """The question, and the retrieval query (with the earlier question for a follow-up)."""
        validate_messages(messages, self.settings.max_question_chars)
        users = [m["content"].strip() for m in messages if m["role"] == "user"]
        question = users[-1]
        if len(users) > 1 and (_FOLLOW_UP.search(question) or len(question) <= 8):
            return question, f"{users[-2]} {question}"
        return question, question

    def _judge(self, index: Index) -> EvidenceJudge:
        if self._judge_cache is None or self._judge_cache[0] is not index:
            self._judge_cache = (index, EvidenceJudge(index))
        return self._judge_cache[1]


def validate_messages(messages: Sequence[dict[str, str]], max_chars: int) -> None:
    """Reject what cannot be answered, naming the problem."""
    if not messages:
        raise InvalidRequest("messages must contain at least one message")
    for i, m in enumerate(messages):
        if m.get("role") not in ROLES:
            raise InvalidRequest(f"messages[{i}].role must be one of {sorted(ROLES)}; got {m.get('role')!r}")
        if not isinstance(m.get("content"), str):
            raise InvalidRequest(f"messages[{i}].content must be a string")
        if len(m["content"]) > max_chars:
            raise InvalidRequest(f"messages[{i}].content has {len(m['content'])} characters; the limit is {max_chars}")
    if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise InvalidRequest("the last message must be a non-empty user message")


def with_pages(citation: Citation, index: Index) -> Citation:
    """The citation with the pages its span covers, for a paged document (PDF)."""
    record = index.documents.get(citation.doc_id)
    page, page_end = page_span(record.pages if record else (), citation.start, citation.end)
    return replace(citation, page=page, page_end=page_end) if page else citation


def build_service(settings: Settings) -> RagService:
    """Load the models and the index named by ``settings``."""
    embedder = build_embedder(settings)
    generator = build_generator(settings)
    try:
        index: Index | None = open_index(settings)
    except NotReady:
        index = None
    return RagService(settings, embedder, generator, index)
