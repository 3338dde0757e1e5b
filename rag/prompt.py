"""Prompt: pick the few sentences of the retrieved chunks that best match the question and render the
chat messages from the templates in ``prompts/``. Prompt size is the main cost on a CPU, so only the most
relevant sentences are sent, and the system prompt stays fixed so its evaluated state is reused."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import takewhile
from pathlib import Path

import numpy as np

from rag.chunk import TITLE_LEVEL, heading
from rag.embed import Embedder
from rag.index import Index, lexical_tokens
from rag.injection import addresses_assistant
from rag.lang import ORDINAL as _ORDINAL
from rag.lang import item_name, overlap
from rag.normalize import to_simplified
from rag.types import Hit, Sentence

_TITLE_CHARS = 20
# Sentence score = DENSE_SHARE * similarity + the rest * rarity-weighted term overlap (measured on the gold
# set: recall of the answer in the chosen sentences 0.924 unweighted, 0.939 weighted).
DENSE_SHARE = 0.5
# Words that ask rather than inform: they say nothing about where the answer is.
_QUESTION_WORDS = re.compile(
    r"什么|多少|哪些|哪个|哪里|哪儿|哪|几个|几所|几名|几项|几|是否|如何|怎样|怎么|为什么|谁|请问|分别|一共|共有|是|吗|呢|的|了|？|\?")


@dataclass(frozen=True)
class Templates:
    system: str
    user: str
    refusal: str
    list_hint: str = ""

    @classmethod
    def load(cls, folder: Path) -> Templates:
        read = lambda name: (folder / name).read_text("utf-8").strip()  # noqa: E731
        return cls(read("system.txt"), read("user.txt"), read("refusal.txt"), read("list.txt"))


def content_terms(question_simplified: str) -> list[str]:
    """The question's lexical terms with the question words taken out."""
    return list(dict.fromkeys(lexical_tokens(_QUESTION_WORDS.sub(" ", question_simplified))))


def candidate_sentences(index: Index, hits: Sequence[Hit]) -> list[Sentence]:
    """Every sentence of the hit chunks (split once at ingest), with its span in the original file; sentences
    that address the assistant (injected instructions) are data, never evidence, and are left out."""
    return evidence_only([s for group in index.sentences([h.chunk.chunk_id for h in hits]) for s in group])


def evidence_only(sentences: Sequence[Sentence]) -> list[Sentence]:
    """The sentences without repeats (scraped pages repeat lines) and without those that address the
    assistant."""
    unique = {(s.doc_id, s.text): s for s in sentences}.values()
    return [s for s in unique if not addresses_assistant(s.simplified)]


def rank_sentences(sentences: Sequence[Sentence], question_simplified: str, query_vector: np.ndarray,
                   embedder: Embedder, titles: dict[str, str] | None = None,
                   idf: Callable[[str], float] | None = None, ignore: set[str] | None = None) -> list[Sentence]:
    """Score sentences by meaning (dense) and shared terms (lexical); best first.

    Terms of the document's title do not count: a question names its source ("…讲话中，…") to pick the
    document, and the title line itself answers nothing.
    """
    titles = {d: to_simplified(t) for d, t in (titles or {}).items()}
    sentences = [s for s in sentences if s.simplified.replace(" ", "") not in titles.get(s.doc_id, "")]
    if not sentences:
        return []
    skip = {t for word in (ignore or set()) for t in lexical_tokens(word)}
    terms = [t for t in content_terms(question_simplified) if t not in skip] or content_terms(question_simplified)
    dense = embedder.embed_documents([s.simplified for s in sentences]) @ query_vector
    scored = []
    for s, d in zip(sentences, dense, strict=True):
        own = [t for t in terms if t not in titles.get(s.doc_id, "")] or terms
        weights = [idf(t) for t in own] if idf else None
        lexical = overlap(own, s.simplified, weights)
        scored.append(replace(s, score=float(DENSE_SHARE * d + (1 - DENSE_SHARE) * lexical)))
    return sorted(scored, key=lambda s: -s.score)


def select(ranked: Sequence[Sentence], budget_chars: int, max_sentences: int = 4,
           min_relative: float = 0.6) -> list[Sentence]:
    """The best sentences that fit in the character budget (at least one), skipping weak ones."""
    chosen: list[Sentence] = []
    used = 0
    for s in ranked:
        if len(chosen) >= max_sentences or (chosen and s.score < min_relative * chosen[0].score):
            break
        if chosen and used + len(s.text) > budget_chars:
            continue
        chosen.append(s)
        used += len(s.text)
    return chosen


def render(templates: Templates, sentences: Sequence[Sentence], question: str,
           titles: dict[str, str], listing: bool = False) -> list[dict[str, str]]:
    """Chat messages: the fixed system prompt, then numbered passages grouped by source, and the question;
    a list question asks for every item (a 1.5B model otherwise tends to stop at the first one)."""
    if listing:
        question += templates.list_hint
    lines: list[str] = []
    for doc_id in dict.fromkeys(s.doc_id for s in sentences):
        if titles.get(doc_id):
            lines.append(f"《{titles[doc_id][:_TITLE_CHARS]}》")
        lines.extend(f"[{i}] {s.text}" for i, s in enumerate(sentences, 1) if s.doc_id == doc_id)
    user = templates.user.format(passages="\n".join(lines), question=question)
    return [{"role": "system", "content": templates.system}, {"role": "user", "content": user}]


# --- list questions: the structure that holds the items ------------------------------------------------------
_ITEM_SEPARATORS = re.compile(r"[、；;]|和|及|与|”“")
# With the number of items known, clauses count as items too: 风险防范增力度,考试组织提效度,信访服务升温度.
_CLAUSE_SEPARATORS = re.compile(r"[、；;，,]|和|及|与|”“")
# A sentence that announces a list ("重点做好五个方面的工作：", "具体如下") holds none of its items.
_ANNOUNCES = re.compile(r"[：:]\s*$|如下|以下")
# A list's own sentence may rank a little below the best one (the best matched the question's wording).
LIST_ANCHOR_RELATIVE = 0.8
LIST_ANCHOR_CANDIDATES = 4


def enumerates(sentence: Sentence, count: int) -> bool:
    """True when the sentence itself lists the items: at least ``count`` of them joined by 、/和/；, or by
    commas too when ``count`` is known; at least three when it is not (甲、乙和丙). A sentence that announces
    a list (ends in a colon, says 如下) does not hold it."""
    if _ANNOUNCES.search(sentence.simplified):
        return False
    separators = _CLAUSE_SEPARATORS if count else _ITEM_SEPARATORS
    return len(separators.findall(sentence.simplified)) + 1 >= (max(count, 2) if count else 3)


def enumerating(ranked: Sequence[Sentence], count: int) -> Sentence | None:
    """Among the best few ranked sentences, the first that lists the items itself; with the number of items
    unknown, only the best sentence (any long sentence lists something)."""
    return next((s for s in _near_top(ranked, LIST_ANCHOR_CANDIDATES if count else 1) if enumerates(s, count)),
                None)


def counted_heading(index: Index, ranked: Sequence[Sentence], count: int) -> tuple[Sentence, list[Sentence]]:
    """Among the best few ranked sentences, the first heading whose section has exactly ``count`` child
    headings («(六)聚焦“规范”,强化“双减”工作» → 1.规范校内教学 2.… 3.…), with those children; a heading
    that matches the question and has as many parts as it asks for beats any sentence listing other things."""
    for s in _near_top(ranked, LIST_ANCHOR_CANDIDATES) if count else ():
        found = heading(s.text)
        if found and found[0] != TITLE_LEVEL:
            # A chunk opening with the heading may already sit in the first child's section: look one up.
            items = next((_child_headings(sentences, own) for own, sentences in _sections(index, s)
                          if own == found[1]), [])
            if len(items) == count:
                return s, items
    return ranked[0], []


def _near_top(ranked: Sequence[Sentence], n: int) -> list[Sentence]:
    return [s for s in ranked[:n] if s.score >= LIST_ANCHOR_RELATIVE * ranked[0].score] if ranked else []


def list_items(index: Index, anchor: Sentence, count: int = 0, asked: str = "") -> list[Sentence]:
    """The sentences that hold the items of a list the anchor sentence belongs to or announces: when the
    anchor is an ordinal item the question (``asked``) names, the sentences under it (二是服务支撑制造业
    高质量发展。→ what follows, up to 三是…); else the headings of its section's children (``1.…``,
    ``2.…``), else the clauses closed by ；that the anchor opens or stands in. The
    anchor's own section is tried first, then its parent; with ``count`` known, the structure with that many
    items wins."""
    found = [items for own, sentences in _sections(index, anchor)
             for items in (_body(sentences, anchor, asked), _child_headings(sentences, own),
                           _semicolon_run(sentences, anchor))
             if len(items) >= 2]
    exact = [f for f in found if len(f) == count]
    return (exact or found or [[]])[0]


def _at(sentences: Sequence[Sentence], anchor: Sentence) -> int:
    return next((i for i, s in enumerate(sentences) if (s.doc_id, s.start) == (anchor.doc_id, anchor.start)), -1)


_NAMED_SHARE = 0.6


def _body(sentences: Sequence[Sentence], anchor: Sentence, asked: str) -> list[Sentence]:
    """The sentences under an ordinal item that the question names (most of the item's pairs of characters
    are in it): the question asks what the item holds, not what its siblings are."""
    at = _at(sentences, anchor)
    if at < 0 or not _ORDINAL.match(anchor.simplified):
        return []
    pairs = set(lexical_tokens(item_name(anchor.simplified)))
    if not pairs or sum(p in asked for p in pairs) < _NAMED_SHARE * len(pairs):
        return []
    return list(takewhile(lambda s: not (_ORDINAL.match(s.simplified) or heading(s.text)), sentences[at + 1:]))


def _semicolon_run(sentences: Sequence[Sentence], anchor: Sentence) -> list[Sentence]:
    """Clauses closed by ；, one item each (要强化…；要增强…；要抓实…；要建设…。): the run the anchor stands in,
    or opens, with the sentence that closes it; three items at least."""
    at = _at(sentences, anchor)
    if at < 0:
        return []
    closed = [s.simplified.rstrip().endswith((";", "；")) for s in sentences]
    start = at if closed[at] else at + 1
    while start > 0 and closed[start - 1]:
        start -= 1
    end = start
    while end < len(sentences) and closed[end]:
        end += 1
    return list(sentences[start:end + 1]) if end - start >= 2 else []


def _sections(index: Index, anchor: Sentence) -> Iterator[tuple[str | None, list[Sentence]]]:
    """The anchor's section and then its parent: each one's heading and its sentences, in reading order."""
    chunks = index.chunks_of(anchor.doc_id)
    mine = next((c for c in chunks if c.start <= anchor.start < c.end), None)
    if mine is None:
        return
    for depth in range(len(mine.section), max(len(mine.section) - 2, -1), -1):
        path = mine.section[:depth]
        region = [c.chunk_id for c in chunks if c.section[:depth] == path]
        yield (path[-1] if path else None), evidence_only([s for group in index.sentences(region) for s in group])


def _child_headings(sentences: Sequence[Sentence], own: str | None) -> list[Sentence]:
    """The sentences that open the highest-level numbered headings among ``sentences``, except the
    section's own heading ``own``."""
    heads: list[tuple[float, Sentence]] = []
    for s in sentences:
        found = heading(s.text)
        if found and found[0] != TITLE_LEVEL and not (own and s.text.startswith(own)):
            heads.append((found[0], s))
    top = min((level for level, _ in heads), default=0)
    return [s for level, s in heads if level == top]


def select_list(ranked: Sequence[Sentence], items: Sequence[Sentence], budget_chars: int,
                max_sentences: int) -> list[Sentence]:
    """The anchor (best sentence) and the list's item sentences in document order, within the budget. Other
    sentences fill the budget only when no structure was found: next to the items they only distract (the
    model lists a neighbouring sentence's attendees as the items)."""
    chosen: list[Sentence] = []
    used = 0
    for s in [*ranked[:1], *items] if items else ranked:
        if len(chosen) >= max_sentences or any(c.start == s.start and c.doc_id == s.doc_id for c in chosen):
            continue
        if chosen and used + len(s.text) > budget_chars:
            continue
        chosen.append(s)
        used += len(s.text)
    return chosen
