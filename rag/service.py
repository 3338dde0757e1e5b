"""The question-answering service: retrieve → choose → answer → cite, plus live document management.

The model does not write an answer that rules then police: it chooses the numbered candidate sentences that
answer (``rag.answer``), a fitted model of general signals decides whether to answer at all, and the answer
is written from the chosen sentences, which are its citations. The only check after generation that can
refuse is a fact: a number that stands in no source is invented.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from rag import cite as citing
from rag.answer import candidates as prompting
from rag.answer import listing, refuse
from rag.answer.answerability import Answerability, Signals
from rag.answer.select import CHOOSE, answer_lead
from rag.answer.verify import StreamVerifier, Verdict
from rag.config import Settings
from rag.embed import CachedEmbedder, Embedder
from rag.errors import IndexOutdated, InvalidRequest, NotFound, NotReady
from rag.evidence import EvidenceJudge, held
from rag.formats import page_span
from rag.generate import Completion, GenerationSlots, Generator
from rag.generate.base import Choice
from rag.index import DocRecord, Index
from rag.ingest import open_index
from rag.intent import Intent
from rag.normalize import is_traditional, to_simplified, to_traditional
from rag.parts import Parts
from rag.question import Question, analyse
from rag.retrieve import RetrievalConfig, search
from rag.types import Answer, Citation, Hit, Sentence

log = logging.getLogger(__name__)

ROLES = frozenset({"system", "user", "assistant"})
# A follow-up leans on the previous turn: it opens with a pointer back (那, 它, 这个…), ends in 呢, or points
# at the previous answer (这个数字, 第二项).
_POINTER = r"(?:这|那)(?:个|些|项|一)|第[一二三四五六七八九十\d]+(?:项|个|条|点|位)"  # 这个数字, 第二项
_FOLLOW_UP = re.compile(rf"^(?:那|还有|另外|此外|它|其|这|该|此|他|她|上述|前者|后者|同一)|呢[？?]?$|"
                        rf"{_POINTER}|上一|刚才|前面")
_FOLLOW_UP_CHARS = 8
# A follow-up that points at the previous answer itself (它的第二项, 这个数字) is looked up with that answer:
# the item or figure it points at is what the sought sentence is about.
_POINTS_AT_ANSWER = re.compile(rf"^(?:它|其(?!他))|{_POINTER}")
_SAID_CHARS = 80
_FALLBACK_CITATIONS = 3

@dataclass(frozen=True)
class Plan:
    """What ``prepare`` decided: a refusal reason, or the numbered candidate sentences and the chat for the
    model."""

    question: str
    traditional: bool
    index: Index
    hits: list[Hit]
    candidates: list[Sentence]
    chat: list[dict[str, str]]
    refusal: str
    analysis: Question | None = None
    intent: Intent = Intent()
    items: tuple[Sentence, ...] = ()  # a list question's item sentences, when a structure holds them
    asked: str = ""  # the question as the model is asked it: a follow-up with the turn it leans on
    coverage: float = 0.0  # the best document's share of the question's content weight
    best_dense: float = 0.0

    @cached_property
    def asked_simplified(self) -> str:
        """What the question brought to the answer, Simplified: the words (and figures) an answer may repeat
        without saying anything. A follow-up's retrieval query holds the earlier question, and the prompt also
        the earlier answer."""
        query = self.analysis.simplified if self.analysis else ""
        return "\n".join(dict.fromkeys(p for p in (query, to_simplified(self.asked or self.question)) if p))


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
        self.answerability = Answerability.load()
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

        The model first chooses among the numbered candidate sentences (``rag.answer``); whether to answer is
        decided then, before any text is written, by the fitted answerability model. The answer goes out only
        as a prefix that passes the checks after generation on its own (``Verdict``): the whole text when it
        passes, else the longest passing prefix, else the refusal, of which nothing was sent before. So the
        streamed text always equals the non-streamed answer.
        """
        started = time.perf_counter()
        plan = self.prepare(messages)
        timings = {"retrieve": time.perf_counter() - started}
        if plan.refusal:
            yield self._refusal(plan.traditional, plan.refusal, timings, started)
            return
        completion: Completion | None = None
        with self.generation_lock:
            choice = self.generator.choose(plan.chat, CHOOSE, len(plan.candidates))
            timings["choose"] = time.perf_counter() - started - timings["retrieve"]
            chosen = [plan.candidates[i - 1] for i in choice.picked]
            signals = self._signals(plan, choice, chosen)
            if reason := self._answerability(signals, chosen):
                yield replace(self._refusal(plan.traditional, reason, timings, started),
                              prompt_tokens=choice.prompt_tokens, context=tuple(plan.candidates),
                              signals=signals.as_dict())
                return
            evidence = [*chosen, *(s for s in plan.items if s not in chosen)]
            verifier = StreamVerifier(lambda text: self._verdict(text, plan, evidence), plan.traditional,
                                      self._completer(plan, evidence) if plan.intent.kind == "list" else None)
            for item in self.generator.stream_on(plan.chat, answer_lead(choice, chosen),
                                                 max_tokens or self.settings.max_tokens,
                                                 self.settings.temperature if temperature is None else temperature):
                if isinstance(item, Completion):
                    completion = item
                    continue
                timings.setdefault("model_first_token", time.perf_counter() - started)
                piece = verifier.feed(item)
                if piece:
                    timings.setdefault("first_token", time.perf_counter() - started)
                yield piece
        assert completion is not None
        timings["generate"] = time.perf_counter() - started - timings["retrieve"]
        verdict, rest = verifier.finish(completion.text)
        if verdict.reason:
            refusal = self._refusal(plan.traditional, verdict.reason, timings, started)
            yield replace(refusal, prompt_tokens=completion.prompt_tokens,
                          completion_tokens=completion.completion_tokens, context=tuple(plan.candidates),
                          signals=signals.as_dict())
            return
        if rest:
            timings.setdefault("first_token", time.perf_counter() - started)
            yield rest
        timings["total"] = time.perf_counter() - started
        yield Answer(verifier.sent, verdict.citations, False, completion.prompt_tokens, completion.completion_tokens,
                     verdict.cut, timings, tuple(plan.candidates), signals.as_dict())

    def _signals(self, plan: Plan, choice: Choice, chosen: Sequence[Sentence]) -> Signals:
        words = plan.analysis.words if plan.analysis else ()
        weights = {w: plan.index.word_weight(w) for w, _ in words}
        share, _ = held(weights, "\n".join(s.simplified for s in chosen)) if weights else (0.0, ())
        return Signals(choice.p_none, plan.coverage, plan.best_dense, plan.candidates[0].score if plan.candidates
                       else 0.0, share, len(chosen))

    def _answerability(self, signals: Signals, chosen: Sequence[Sentence]) -> str:
        """The reason to refuse once the model has chosen, or ""."""
        if not chosen:
            return f"model_none: the model chose no sentence (p_none {signals.p_none:.2f})"
        threshold = self.answerability.threshold if self.settings.min_confidence is None \
            else self.settings.min_confidence
        probability = self.answerability.probability(signals)
        if probability < threshold:
            shown = ", ".join(f"{k} {v:.2f}" for k, v in signals.as_dict().items())
            return f"answerability {probability:.2f} < {threshold:.2f} ({shown})"
        return ""

    @staticmethod
    def _completer(plan: Plan, evidence: Sequence[Sentence]) -> Callable[[str], str]:
        """A list answer, completed from the list it names in the chosen sentences."""
        def complete(text: str) -> str:
            simplified = to_simplified(text)
            done = listing.complete(simplified, evidence, plan.items, plan.intent.count)
            return text if done == simplified else done
        return complete

    def _verdict(self, text: str, plan: Plan, evidence: Sequence[Sentence]) -> Verdict:
        """The checks after generation on ``text`` (the whole answer or a prefix of it). Its facts are checked
        against every sentence the model was shown; its citations are the chosen sentences that support it,
        else the shown ones that do, else the chosen ones (the model chose them as its source)."""
        asked = plan.asked_simplified
        shown = [*evidence, *(s for s in plan.candidates if s not in evidence)]
        if reason := refuse.after(text, shown, asked):
            return Verdict(reason)
        collective = plan.intent.kind == "list"
        citations = citing.cite(text, evidence, plan.index.sources, question=asked, collective=collective) or \
            citing.cite(text, shown, plan.index.sources, question=asked, collective=collective) or \
            [Citation(s.doc_id, s.start, s.end, s.text, s.section) for s in evidence[:_FALLBACK_CITATIONS]
             if citing.verify(s, plan.index.sources)]
        return Verdict("", tuple(with_pages(c, plan.index) for c in citations), bool(citing.own_words(text, asked)))

    def prepare(self, messages: Sequence[dict[str, str]]) -> Plan:
        """Everything before generation: retrieval, the candidate sentences, the prompt."""
        text, query, asked = self._question(messages)
        index = self.index
        if refusal := refuse.before_retrieval(text):
            return Plan(text, is_traditional(text), index, [], [], [], refusal)
        question = analyse(text, self.embedder, query)
        intent = question.intent
        hits = search(index, question, self.settings.context_chunks, config=self.retrieval_config())
        if not hits:
            return Plan(text, question.traditional, index, [], [], [], "nothing_found: no passage was retrieved",
                        analysis=question, intent=intent)
        evidence = self._judge(index).assess(hits, question.words)
        titles = {d: index.documents[d].title for d in dict.fromkeys(h.chunk.doc_id for h in hits)}
        # The places and years of the question picked the document; they say nothing about the sentence.
        ranked = prompting.rank_sentences(prompting.candidate_sentences(index, hits), question.simplified,
                                          question.vector, self.sentence_embedder, titles, index.idf,
                                          ignore=set(evidence.musts))
        title_text = to_simplified("\n".join(titles.values()))
        terms = [w for w, must in question.words if not must and w not in title_text]
        candidates, items = self._candidates(index, ranked, intent, terms, to_simplified(text))
        if not candidates:
            return Plan(text, question.traditional, index, hits, [], [], "nothing_found: no sentence to show",
                        analysis=question, intent=intent)
        chat = prompting.render(self.templates, candidates, asked, titles, listing=intent.kind == "list")
        return Plan(text, question.traditional, index, hits, candidates, chat, "", question, intent, tuple(items),
                    asked, evidence.coverage, evidence.best_dense)

    def _candidates(self, index: Index, ranked: list[Sentence], intent: Intent, terms: Sequence[str],
                    asked: str) -> tuple[list[Sentence], list[Sentence]]:
        """The sentences the model chooses from, and a list's item sentences: the best that fit the budget;
        for a list question, the structure holding the items first (the announcing sentence and its items)."""
        s = self.settings
        if intent.kind != "list" or not ranked:
            return prompting.select(ranked, s.context_max_chars, s.context_sentences, min_relative=0.0), []
        anchor, items = prompting.counted_heading(index, ranked, intent.count)
        if not items and (listing_ := prompting.enumerating(ranked, intent.count)):  # one sentence holds them
            rest = [r for r in ranked if r is not listing_]
            return prompting.select([replace(listing_, score=ranked[0].score), *rest], s.context_max_chars,
                                    s.context_sentences, min_relative=0.0), []
        items = items or prompting.list_items(index, anchor, intent.count, terms, asked)
        head = prompting.select_list([anchor, *(r for r in ranked if r is not anchor)], items,
                                     s.list_max_chars, s.list_sentences)
        rest = [r for r in ranked if r not in head]
        room = max(s.context_max_chars - sum(len(h.text) for h in head), 0)
        return [*head, *prompting.select(rest, room, max(s.context_sentences - len(head), 0),
                                         min_relative=0.0)] if room and rest else head, items

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
    return bool(_FOLLOW_UP.search(to_simplified(question))) or len(question) <= _FOLLOW_UP_CHARS


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


def with_pages(citation: Citation, index: Index) -> Citation:
    """The citation with the pages its span covers, for a paged document (PDF)."""
    record = index.documents.get(citation.doc_id)
    page, page_end = page_span(record.pages if record else (), citation.start, citation.end)
    return replace(citation, page=page, page_end=page_end) if page else citation


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
