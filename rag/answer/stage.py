"""The choose stage (``RAG_ANSWER_STAGE=choose``): the model chooses, the code copies, refusal is calibrated.

Retrieval is the service's; then the candidate sentences are numbered, the model writes the numbers of those
that answer (or 无) under a grammar, the same turn goes on to a short answer from the chosen sentences and the
best-ranked one (``answer_sources``), and the answer is sent only if it passes the checks of fact and the
fitted answerability model, cited from the sentences it was written from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from rag import cite as citing
from rag import listing
from rag import prompt as prompting
from rag.answer import refuse
from rag.answer.answerability import Answerability, Signals
from rag.answer.select import CHOOSE, answer_lead, answer_sources, follow_up_sources, load_system
from rag.answer.verify import StreamVerifier, Verdict, released, with_pages
from rag.config import Settings
from rag.embed import CachedEmbedder, Embedder
from rag.evidence import EvidenceJudge, held
from rag.generate import GenerationSlots, Generator
from rag.generate.base import Choice
from rag.index import Index
from rag.intent import Intent, intent_of
from rag.normalize import is_traditional, to_simplified, to_traditional
from rag.question import Question, analyse
from rag.retrieve import RetrievalConfig, search
from rag.types import Answer, Citation, Sentence

log = logging.getLogger(__name__)
_FALLBACK_CITATIONS = 3


class Host(Protocol):
    """What the stage uses of the service (``rag.service.RagService``)."""

    settings: Settings
    embedder: Embedder
    sentence_embedder: CachedEmbedder
    generation_lock: GenerationSlots
    templates: prompting.Templates

    @property
    def index(self) -> Index: ...

    @property
    def generator(self) -> Generator: ...

    def retrieval_config(self) -> RetrievalConfig: ...

    def _question(self, messages: Sequence[dict[str, str]]) -> tuple[str, str, str]: ...

    def _judge(self, index: Index) -> EvidenceJudge: ...


@dataclass(frozen=True)
class Turn:
    """One question prepared for choosing: a refusal reason, or the numbered candidates and the chat."""

    question: str
    traditional: bool
    index: Index
    candidates: list[Sentence]
    chat: list[dict[str, str]]
    refusal: str
    asked: str = ""  # Simplified: what the question (and a follow-up's earlier turn) brought
    intent: Intent = Intent()
    items: tuple[Sentence, ...] = ()
    analysis: Question | None = None
    coverage: float = 0.0
    best_dense: float = 0.0
    follow_up: bool = False  # the question leans on an earlier turn, which ``asked`` then holds too


class ChooseStage:
    """The stage with its fitted answerability model and its system prompt (``prompts/choose.txt``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.answerability = Answerability.load()
        self.system = load_system(settings.prompts_dir)

    def stream(self, host: Host, messages: Sequence[dict[str, str]], max_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str | Answer]:
        """Text deltas, then the whole ``Answer``, as ``RagService.stream``: whether to answer is decided once
        the model has chosen, before any text is written; the answer goes out only as a clause prefix that
        passes the checks on its own, so the streamed text always equals the non-streamed answer."""
        started = time.perf_counter()
        turn = self.prepare(host, messages)
        timings = {"retrieve": time.perf_counter() - started}
        if turn.refusal:
            yield self._refusal(host, turn.traditional, turn.refusal, timings, started)
            return
        with host.generation_lock:
            choice = host.generator.choose(turn.chat, CHOOSE, len(turn.candidates))
            timings["choose"] = time.perf_counter() - started - timings["retrieve"]
            if not choice.picked:
                yield replace(self._refusal(host, turn.traditional, f"model_none: the model chose no sentence "
                                            f"(p_none {choice.p_none:.2f})", timings, started),
                              prompt_tokens=choice.prompt_tokens, context=tuple(turn.candidates))
                return
            sources = answer_sources(turn.candidates, choice)
            evidence = [*sources, *(s for s in turn.items if s not in sources)]
            # Nothing is sent before the answerability verdict, which reads the whole answer.
            verifier = StreamVerifier(lambda text: self._verdict(text, turn, evidence), turn.traditional,
                                      _completer(turn, evidence) if turn.intent.kind == "list" else None,
                                      hold=True)
            shown = follow_up_sources(sources, prompting.content_terms(to_simplified(turn.question)),
                                      turn.index.word_weight) if turn.follow_up else sources
            deltas = host.generator.stream_on(turn.chat, answer_lead(choice, shown),
                                              max_tokens or self.settings.max_tokens,
                                              self.settings.temperature if temperature is None else temperature)
            completion = yield from released(deltas, verifier, timings, started)
        timings["generate"] = time.perf_counter() - started - timings["retrieve"]
        verdict, rest = verifier.finish(completion.text)
        signals = self.signals(turn, choice, sources, completion.logprob, to_simplified(rest))
        reason = verdict.reason or self._answerability(signals)
        if reason:
            yield replace(self._refusal(host, turn.traditional, reason, timings, started),
                          prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                          context=tuple(turn.candidates), signals=signals.as_dict())
            return
        timings.setdefault("first_token", time.perf_counter() - started)
        yield rest
        timings["total"] = time.perf_counter() - started
        yield Answer(verifier.sent, verdict.citations, False, completion.prompt_tokens, completion.completion_tokens,
                     verdict.cut, timings, tuple(turn.candidates), signals.as_dict())

    def prepare(self, host: Host, messages: Sequence[dict[str, str]]) -> Turn:
        """Retrieval and the candidate sentences; the chat the model chooses in."""
        text, query, asked = host._question(messages)
        index = host.index
        intent = intent_of(to_simplified(text))
        if refusal := refuse.before_retrieval(text):
            return Turn(text, is_traditional(text), index, [], [], refusal)
        question = analyse(text, host.embedder, query)
        hits = search(index, question, self.settings.context_chunks, config=host.retrieval_config())
        evidence = host._judge(index).assess(hits, question.words)
        titles = {d: index.documents[d].title for d in dict.fromkeys(h.chunk.doc_id for h in hits)}
        # The places and years of the question picked the document; they say nothing about the sentence.
        ranked = prompting.rank_sentences(prompting.candidate_sentences(index, hits), question.simplified,
                                          question.vector, host.sentence_embedder, titles, index.idf,
                                          ignore=set(evidence.musts))
        title_text = to_simplified("\n".join(titles.values()))
        terms = [w for w, must in question.words if not must and w not in title_text]
        candidates, items = self._candidates(index, ranked, intent, terms, to_simplified(text))
        asked_s = "\n".join(dict.fromkeys(p for p in (question.simplified, to_simplified(asked)) if p))
        if not candidates:
            return Turn(text, question.traditional, index, [], [], "nothing_found: no sentence was retrieved",
                        asked_s, intent, analysis=question)
        body = prompting.render(host.templates, candidates, asked, titles, listing=intent.kind == "list")[-1]
        chat = [{"role": "system", "content": self.system}, body]
        return Turn(text, question.traditional, index, candidates, chat, "", asked_s, intent, tuple(items), question,
                    evidence.coverage, evidence.best_dense, asked != text)

    def _candidates(self, index: Index, ranked: list[Sentence], intent: Intent, terms: Sequence[str],
                    asked: str) -> tuple[list[Sentence], list[Sentence]]:
        """The sentences the model chooses from, and a list's item sentences: the best that fit the budget;
        for a list question, the structure holding the items first (the announcing sentence and its items)."""
        s = self.settings
        budget, most = s.choose_max_chars, s.choose_sentences
        if intent.kind != "list" or not ranked:
            return prompting.select(ranked, budget, most, min_relative=0.0), []
        anchor, items = prompting.counted_heading(index, ranked, intent.count)
        if not items and (listed := prompting.enumerating(ranked, intent.count)):  # one sentence holds them
            rest = [r for r in ranked if r is not listed]
            return prompting.select([replace(listed, score=ranked[0].score), *rest], budget, most,
                                    min_relative=0.0), []
        items = items or prompting.list_items(index, anchor, intent.count, terms, asked)
        head = prompting.select_list([anchor, *(r for r in ranked if r is not anchor)], items,
                                     s.list_max_chars, s.list_sentences)
        rest = [r for r in ranked if r not in head]
        room = max(budget - sum(len(h.text) for h in head), 0)
        more = prompting.select(rest, room, max(most - len(head), 0), min_relative=0.0) if room and rest else []
        return [*head, *more], items

    @staticmethod
    def signals(turn: Turn, choice: Choice, sources: Sequence[Sentence], logprob: float | None,
                answer: str) -> Signals:
        """The answerability signals of a written answer (``answer``: Simplified)."""
        words = turn.analysis.words if turn.analysis else ()
        weights = {w: turn.index.word_weight(w) for w, _ in words}

        def share(sentences: Sequence[Sentence]) -> float:
            return held(weights, "\n".join(s.simplified for s in sentences))[0] if weights else 0.0

        chosen = [turn.candidates[i - 1] for i in choice.picked]
        shown = [*sources, *(s for s in turn.candidates if s not in sources)]
        support = {id(s): citing.support(answer, s, turn.asked) for s in shown} if answer else {}
        best = max(shown, key=lambda s: support[id(s)]) if support else None
        top = turn.candidates[0].score if turn.candidates else 0.0
        return Signals(choice.p_none, turn.coverage, turn.best_dense, top, share(chosen), len(chosen),
                       share(sources), logprob, support[id(best)] if best else 0.0, share([best]) if best else 0.0)

    def _answerability(self, signals: Signals) -> str:
        """The reason to refuse a written answer, or ""."""
        threshold = self.answerability.threshold if self.settings.min_confidence is None \
            else self.settings.min_confidence
        probability = self.answerability.probability(signals)
        if probability < threshold:
            shown = ", ".join(f"{k} {v:.2f}" for k, v in signals.as_dict().items())
            return f"answerability {probability:.2f} < {threshold:.2f} ({shown})"
        return ""

    @staticmethod
    def _verdict(text: str, turn: Turn, evidence: Sequence[Sentence]) -> Verdict:
        """The checks after generation on ``text`` (the whole answer or a prefix of it). Its facts are checked
        against every sentence the model was shown; its citations are the sentences it was written from that
        support it, else the shown ones that do, else the ones it was written from."""
        shown = [*evidence, *(s for s in turn.candidates if s not in evidence)]
        if reason := refuse.after(text, shown, turn.asked, to_simplified(turn.question)):
            return Verdict(reason)
        collective, sources = turn.intent.kind == "list", turn.index.sources
        citations = citing.cite(text, evidence, sources, question=turn.asked, collective=collective) or \
            citing.cite(text, shown, sources, question=turn.asked, collective=collective) or \
            [Citation(s.doc_id, s.start, s.end, s.text, s.section) for s in evidence[:_FALLBACK_CITATIONS]
             if citing.verify(s, sources)]
        return Verdict("", tuple(with_pages(c, turn.index) for c in citations),
                       bool(citing.own_words(text, turn.asked)))

    @staticmethod
    def _refusal(host: Host, traditional: bool, reason: str, timings: dict[str, float], started: float) -> Answer:
        log.info("refused: %s", reason)
        timings["total"] = time.perf_counter() - started
        timings.setdefault("first_token", timings["total"])
        text = host.templates.refusal
        return Answer(to_traditional(text) if traditional else text, (), True, 0, 0, reason, timings)


def _completer(turn: Turn, evidence: Sequence[Sentence]) -> Callable[[str], str]:
    """A list answer, completed from the list it names in the sentences it was written from."""
    def complete(text: str) -> str:
        simplified = to_simplified(text)
        done = listing.complete(simplified, evidence, turn.items, turn.intent.count)
        return text if done == simplified else done
    return complete
