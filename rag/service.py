"""The question-answering service: retrieve → prompt → generate → cite, plus live document management.

Refusal rests on evidence, not only on the model's word: before generation the question's content terms
(weighted by rarity) must be found in a retrieved passage or its document, and the best passage must be
similar enough; after generation, an answer with invented numbers or no supporting sentence is refused.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from rag import cite as citing
from rag import listing
from rag import prompt as prompting
from rag.answer.verify import StreamVerifier, Verdict, released, with_pages
from rag.config import Settings
from rag.embed import CachedEmbedder, Embedder
from rag.errors import IndexOutdated, InvalidRequest, NotFound, NotReady
from rag.evidence import EvidenceJudge
from rag.generate import GenerationSlots, Generator
from rag.index import DocRecord, Index
from rag.ingest import open_index
from rag.intent import Intent, intent_of
from rag.normalize import is_traditional, to_simplified, to_traditional
from rag.parts import Parts
from rag.question import Question, analyse
from rag.refuse import Answered, Refuser
from rag.retrieve import RetrievalConfig, search
from rag.types import Answer, Hit, Sentence

log = logging.getLogger(__name__)

ROLES = frozenset({"system", "user", "assistant"})
# A follow-up leans on the previous turn: it opens with a pointer back (那, 它, 这个…), ends in 呢, or points
# at the previous answer (这个数字, 第二项).
_POINTER = r"(?:这|那)(?:个|些|项|一)|第[一二三四五六七八九十\d]+(?:项|个|条|点|位)"  # 这个数字, 第二项
_FOLLOW_UP = re.compile(rf"^(?:那|还有|另外|此外|它|其|这|该|此|他|她|上述|前者|后者|同一)|呢[？?]?$|"
                        rf"{_POINTER}|上一|刚才|前面")
# A follow-up that points at the previous answer itself (它的第二项, 这个数字) is looked up with that answer:
# the item or figure it points at is what the sought sentence is about.
_POINTS_AT_ANSWER = re.compile(rf"^(?:它|其(?!他))|{_POINTER}")
_SAID_CHARS = 80


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
    analysis: Question | None = None
    intent: Intent = Intent()
    items: tuple[Sentence, ...] = ()  # a list question's item sentences, when a structure holds them
    asked: str = ""  # the question as the model is asked it: a follow-up with the turn it leans on

    @cached_property
    def asked_simplified(self) -> str:
        """What the question brought to the answer, Simplified: the words (and figures) an answer may repeat
        without saying anything. A follow-up's retrieval query holds the earlier question, and the prompt also
        the earlier answer."""
        query = self.analysis.simplified if self.analysis else ""
        return "\n".join(dict.fromkeys(p for p in (query, to_simplified(self.asked or self.question)) if p))

    @cached_property
    def evidence(self) -> list[Sentence]:
        """What an answer may rest on: the chosen sentences, and the list's items the budget left out (a
        completed list names them)."""
        shown = {(s.doc_id, s.start) for s in self.chosen}
        return [*self.chosen, *(s for s in self.items if (s.doc_id, s.start) not in shown)]


class RagService:
    """Holds the models and the live index; up to ``RAG_MAX_PARALLEL_GENERATIONS`` generations run at once.

    It is the ``IndexHolder`` of the index writer (``rag.index.writer``), which swaps in each new index.
    Without a generator it searches only (``rag eval --no-llm``)."""

    def __init__(self, settings: Settings, embedder: Embedder, generator: Generator | None, index: Index | None,
                 problem: IndexOutdated | None = None) -> None:
        self.settings = settings
        self.embedder = embedder
        self._generator = generator
        self._index = index
        self.problem = problem  # why the index on disk cannot be served (a rebuild fixes it)
        self.templates = prompting.Templates.load(settings.prompts_dir)
        self.generation_lock = GenerationSlots(settings.parallel_generations)
        self._judge_cache: tuple[Index, EvidenceJudge] | None = None
        self.sentence_embedder = CachedEmbedder(embedder)
        self.refuser = Refuser(settings)
        if index is not None:
            index.check_embedder(embedder.name, embedder.dim)

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            raise NotReady("this service was built to search only (rag eval --no-llm): it has no generator")
        return self._generator

    @generator.setter
    def generator(self, generator: Generator) -> None:
        self._generator = generator

    # --- index -------------------------------------------------------------------------------------
    @property
    def index(self) -> Index:
        if self._index is None:
            raise self.problem or NotReady("no index is loaded; ingest documents first (`rag ingest` or "
                                                  "POST /v1/documents)")
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

    # --- the index holder of the writer (``rag.index.writer``) --------------------------------------
    @property
    def loaded_index(self) -> Index | None:
        return self._index

    def swap_index(self, index: Index | None, problem: IndexOutdated | None = None) -> None:
        """Make ``index`` the one requests read: one reference assignment, so readers never wait."""
        if index is not None:
            index.check_embedder(self.embedder.name, self.embedder.dim)
        self._index, self.problem = index, problem

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
        """Text deltas, then the whole ``Answer``; empty strings (ticks while the model writes) carry no text.

        Nothing the verdict could retract is ever sent. Text goes out only as a prefix of the model's answer
        that passes every check after generation on its own (``Verdict``); the answer is the whole text when
        it passes, else the longest passing prefix, else the refusal, of which nothing was sent before. So
        the streamed text always equals the non-streamed answer.
        """
        started = time.perf_counter()
        plan = self.prepare(messages)
        timings = {"retrieve": time.perf_counter() - started}
        if plan.refusal:
            yield self._refusal(plan.traditional, plan.refusal, timings, started)
            return
        verifier = StreamVerifier(lambda text: self._verdict(text, plan), plan.traditional,
                                  self._completer(plan) if plan.intent.kind == "list" else None)
        with self.generation_lock:
            deltas = self.generator.stream(plan.chat, max_tokens or self.settings.max_tokens,
                                           self.settings.temperature if temperature is None else temperature)
            completion = yield from released(deltas, verifier, timings, started)
        timings["generate"] = time.perf_counter() - started - timings["retrieve"]
        verdict, rest = verifier.finish(completion.text)
        if verdict.reason:
            refusal = self._refusal(plan.traditional, verdict.reason, timings, started)
            yield Answer(refusal.text, (), True, completion.prompt_tokens, completion.completion_tokens,
                         verdict.reason, refusal.timings, tuple(plan.chosen))
            return
        if rest:
            timings.setdefault("first_token", time.perf_counter() - started)
            yield rest
        timings["total"] = time.perf_counter() - started
        yield Answer(verifier.sent, verdict.citations, False, completion.prompt_tokens, completion.completion_tokens,
                     verdict.cut, timings, tuple(plan.chosen))

    @staticmethod
    def _completer(plan: Plan) -> Callable[[str], str]:
        """A list answer, completed from the list it names in the sentences the model was shown."""
        def complete(text: str) -> str:
            simplified = to_simplified(text)
            done = listing.complete(simplified, plan.evidence, plan.items, plan.intent.count)
            return text if done == simplified else done
        return complete

    def _verdict(self, text: str, plan: Plan) -> Verdict:
        """The checks after generation on ``text`` (the whole answer or a prefix of it)."""
        asked = plan.asked_simplified
        answered = Answered(text, asked, plan.evidence, to_simplified(plan.question))
        if reason := self.refuser.after(answered, plan.intent):
            return Verdict(reason)
        citations = citing.cite(text, plan.evidence, plan.index.sources, question=asked,
                                collective=plan.intent.kind == "list")
        if reason := self.refuser.support(citations):
            return Verdict(reason)
        return Verdict("", tuple(with_pages(c, plan.index) for c in citations),
                       bool(citing.own_words(text, asked)))

    def prepare(self, messages: Sequence[dict[str, str]]) -> Plan:
        """Everything before generation: retrieval, the evidence verdict, the chosen sentences, the prompt."""
        text, query, asked = self._question(messages)
        index = self.index
        text_s = to_simplified(text)
        intent = intent_of(text_s)
        if refusal := self.refuser.before_retrieval(text):
            return Plan(text, is_traditional(text), index, [], [], [], refusal, intent=intent)
        question = analyse(text, self.embedder, query)
        traditional, query_s = question.traditional, question.simplified
        hits = search(index, question, self.settings.context_chunks, config=self.retrieval_config())
        evidence = self._judge(index).assess(hits, question.words)
        if refusal := self.refuser.before(evidence):
            return Plan(text, traditional, index, hits, [], [], refusal, analysis=question, intent=intent)
        # Only documents that cover the question may supply evidence: a neighbour's figure is no answer.
        covering = evidence.covering(self.settings.min_coverage)
        hits = [h for h in hits if h.chunk.doc_id in covering]
        titles = {d: index.documents[d].title for d in covering}
        sentences = prompting.candidate_sentences(index, hits)
        # The places and years of the question picked the document; they say nothing about the sentence.
        ranked = prompting.rank_sentences(sentences, query_s, question.vector, self.sentence_embedder, titles,
                                          index.idf, ignore=set(evidence.musts))
        chosen, items = self._choose(index, ranked, intent, text_s)
        chat = prompting.render(self.templates, chosen, asked, titles, listing=intent.kind == "list")
        return Plan(text, traditional, index, hits, chosen, chat, "", question, intent, tuple(items), asked)

    def _choose(self, index: Index, ranked: list[Sentence], intent: Intent,
                asked: str) -> tuple[list[Sentence], list[Sentence]]:
        """The sentences for the model and a list's item sentences: the best few, or for a list question the
        structure holding the items; the question ``asked`` (Simplified) names the item whose parts it asks
        for."""
        s = self.settings
        if intent.kind != "list" or not ranked:
            return prompting.select(ranked, s.context_max_chars, s.context_sentences), []
        anchor, items = prompting.counted_heading(index, ranked, intent.count)
        if not items and (listing := prompting.enumerating(ranked, intent.count)):  # one sentence holds them
            rest = [r for r in ranked if r is not listing]
            return prompting.select([replace(listing, score=ranked[0].score), *rest], s.context_max_chars,
                                    s.context_sentences), []
        items = items or prompting.list_items(index, anchor, intent.count, asked)
        chosen = prompting.select_list([anchor, *(r for r in ranked if r is not anchor)], items,
                                       s.list_max_chars, s.list_sentences)
        return chosen, items

    def _refusal(self, traditional: bool, reason: str, timings: dict[str, float], started: float) -> Answer:
        log.info("refused: %s", reason)
        timings["total"] = time.perf_counter() - started
        timings.setdefault("first_token", timings["total"])
        text = self.templates.refusal
        return Answer(to_traditional(text) if traditional else text, (), True, 0, 0, reason, timings)

    def _question(self, messages: Sequence[dict[str, str]]) -> tuple[str, str, str]:
        """The question, the retrieval query and what the model is asked: a follow-up is resolved against
        the previous turn (its question, and its answer unless that was a refusal; the query holds that
        answer too when the follow-up points at it)."""
        validate_messages(messages, self.settings.max_question_chars)
        question = messages[-1]["content"].strip()
        query, asked, current = question, question, question
        for earlier, said in reversed(_turns(messages[:-1])):
            if not is_follow_up(current):
                break
            refused = to_simplified(said) == to_simplified(self.templates.refusal)
            pointed = said if said and not refused and _POINTS_AT_ANSWER.search(to_simplified(current)) else ""
            query = " ".join(p for p in (earlier, pointed, query) if p)
            asked = f"{earlier}（上次回答：{said[:_SAID_CHARS]}）{asked}" if said and not refused else \
                f"{earlier} {asked}"
            current = earlier
        return question, query, asked

    def _judge(self, index: Index) -> EvidenceJudge:
        if self._judge_cache is None or self._judge_cache[0] is not index:
            self._judge_cache = (index, EvidenceJudge(index))
        return self._judge_cache[1]


def is_follow_up(question: str) -> bool:
    """True when the question leans on the previous turn (那初中呢？, 它的第二项是什么, 这个数字是哪一年的)."""
    return bool(_FOLLOW_UP.search(to_simplified(question)))


def _turns(messages: Sequence[dict[str, str]]) -> list[tuple[str, str]]:
    """The earlier (question, answer) pairs, oldest first; the answer is "" when none followed."""
    turns: list[tuple[str, str]] = []
    for m in messages:
        if m["role"] == "user":
            turns.append((m["content"].strip(), ""))
        elif m["role"] == "assistant" and turns:
            turns[-1] = (turns[-1][0], m["content"].strip())
    return turns


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


def build_service(settings: Settings, parts: Parts | None = None, *, generate: bool = True) -> RagService:
    """Load the models (``parts``, by default those ``settings`` name) and the index named by ``settings``;
    with ``generate`` false, no generator: the service searches only."""
    parts = parts or Parts()
    embedder = parts.embedder(settings)
    generator = parts.generator(settings) if generate else None
    problem = None
    try:
        index: Index | None = open_index(settings)
    except NotReady:
        index = None
    except IndexOutdated as exc:  # served as this error (and /health says it) until a rebuild
        index, problem = None, exc
    return RagService(settings, embedder, generator, index, problem)
