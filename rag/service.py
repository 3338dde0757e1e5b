"""The question-answering service: retrieve → choose → answer → cite, plus live document management.

The answer stage is ``rag.answer``: the model chooses numbered candidate sentences, writes a short answer
from them, and a fitted answerability model, with checks of fact (a number no source holds), decides whether
the answer is sent or the service says it found nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence

from rag import prompt as prompting
from rag.answer.stage import ChooseStage
from rag.config import Settings
from rag.embed import CachedEmbedder, Embedder
from rag.errors import IndexOutdated, InvalidRequest, NotFound, NotReady
from rag.evidence import EvidenceJudge
from rag.generate import GenerationSlots, Generator
from rag.index import DocRecord, Index
from rag.ingest import open_index
from rag.normalize import to_simplified
from rag.parts import Parts
from rag.question import analyse
from rag.retrieve import RetrievalConfig, search
from rag.types import Answer, Hit

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
        self.chooser = ChooseStage(settings)
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

        Nothing the verdict could retract is ever sent: the answer goes out once its checks and the
        answerability model have passed it (``rag.answer.stage``), so the streamed text always equals the
        non-streamed answer, and a refusal sends nothing before it.
        """
        yield from self.chooser.stream(self, messages, max_tokens, temperature)

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
