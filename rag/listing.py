"""Listing: a list answer, completed from the source. The model picks the list; the source supplies its items.

A 1.5B model finds the right list but copies it badly: it drops one item of four, writes 具体化 for the
source's 成果化 or 基础知识性 for 系统性, runs out of tokens before the last item. When the answer's items
match at least two items of one list in the passages it was shown, and that list has items the answer lacks,
the answer becomes that list, copied from the source. A list is an enumeration inside one clause (甲、乙和丙)
or the item sentences of the structure the prompt stage found (a section's numbered children, 一是…二是…).
An answer that lacks nothing is left as the model wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.lang import CLAUSE, MAX_LIST_ITEMS, item_name, unnumbered
from rag.types import Sentence

# The answer's items: what the model wrote between list marks, without its own numbering.
_ANSWER_MARKS = re.compile(r"[、，,；;。：:\n]+")
_QUOTES = "“”‘’\"'「」『』《》 "
# An enumeration: the parts of one clause joined by 、, the last two perhaps by 和/及/与 (甲、乙和丙); these
# are split nowhere else, being parts of words too (普及, 和谐).
_LAST_JOIN = re.compile(r"以及|和|及|与")
_MIN_CHARS = 2
_MIN_SENTENCE_MATCH = 3  # a shorter piece (坚持, 推进) is found in too many item sentences to pick one


def complete(answer: str, shown: Sequence[Sentence], items: Sequence[Sentence], count: int = 0) -> str:
    """``answer`` (Simplified) rewritten from the source list it names, or unchanged when it names none or
    lacks nothing. ``shown``: the sentences the model was shown; ``items``: the item sentences of the found
    structure (may be empty); ``count``: the number of items the question asks for (0: unknown)."""
    pieces = answer_items(answer)
    if len(pieces) < 2:
        return answer
    for found in enumerations(shown):
        if rewritten := _from_enumeration(pieces, found, count):
            return rewritten
    if 2 <= len(items) <= MAX_LIST_ITEMS and count in (0, len(items)):
        return _from_sentences(answer, pieces, items, count)
    return answer


def answer_items(answer: str) -> list[str]:
    """The items the answer names, in order."""
    found = (unnumbered(p.strip()).strip(_QUOTES) for p in _ANSWER_MARKS.split(answer))
    return [p for p in found if len(p) >= _MIN_CHARS]


@dataclass(frozen=True)
class Enumeration:
    """A clause joining two items or more: its parts, and the whole sentence it stands in."""

    parts: tuple[str, ...]
    sentence: str

    @property
    def cores(self) -> tuple[str, ...]:
        """Each part as an item: the first without the words that lead into the list (推动各项任务|成果化), cut to
        the length of the shortest part in between; the last without what follows 等 (六中|等学校), else cut
        the same way (水果|三大特色产业)."""
        parts = self.parts
        shortest = min(len(p) for p in (parts[1:-1] if len(parts) > 2 else parts))
        first = parts[0][-shortest:]
        last = parts[-1].split("等", 1)[0] if "等" in parts[-1] else ""
        last = last if len(last) >= _MIN_CHARS else parts[-1][:shortest]
        return (first, *parts[1:-1], last) if len(parts) > 2 else (first, last)


def enumerations(sentences: Sequence[Sentence]) -> list[Enumeration]:
    """Every clause of ``sentences`` that joins two items or more."""
    found = []
    for s in sentences:
        for clause in CLAUSE.findall(s.simplified):
            parts = [p.strip(_QUOTES) for p in clause.split("、")]
            last = _LAST_JOIN.split(parts[-1], maxsplit=1)
            if len(last) == 2 and all(len(p) >= _MIN_CHARS for p in last):
                parts[-1:] = last
            if 2 <= len(parts) <= MAX_LIST_ITEMS and all(parts):
                found.append(Enumeration(tuple(parts), s.simplified))
    return found


def _named(piece: str, parts: Sequence[str], cores: Sequence[str], at_least: int = _MIN_CHARS) -> set[int]:
    """The parts an answer piece names: those it holds whole (盟二中和锡市一中), else the one part it is found in
    (a piece found in several names none)."""
    held = {i for i, (part, core) in enumerate(zip(parts, cores, strict=True)) if part in piece or core in piece}
    if held:
        return held
    within = {i for i, part in enumerate(parts) if len(piece) >= at_least and piece in part}
    return within if len(within) == 1 else set()


def _from_enumeration(pieces: Sequence[str], found: Enumeration, count: int) -> str:
    """The enumeration's items, when the answer names two of them or more and lacks some, and what else it
    says could be the lacking items miscopied (or words of the same sentence leading into the list). With the
    number of items unknown, the answer must name half of them: a few of a long list may be a chosen few."""
    parts, cores = found.parts, found.cores
    if count and len(parts) != count:
        return ""
    naming = {piece: _named(piece, parts, cores) for piece in pieces}
    named = set().union(*naming.values())
    missing = len(parts) - len(named)
    other = [p for p, hits in naming.items() if not hits and p not in found.sentence]
    if len(named) < 2 or not missing or len(other) > missing or (not count and len(named) * 2 < len(parts)):
        return ""
    return "、".join(_written(part, core, pieces) for part, core in zip(parts, cores, strict=True))


def _written(part: str, core: str, pieces: Sequence[str]) -> str:
    """A part as the answer writes it: the model's own pieces found in it, in the source's order (they are the
    source's words), else its core."""
    own = sorted({p for p in pieces if p in part}, key=part.index)
    own = [p for p in own if not any(p != q and p in q for q in own)]
    return "、".join(own) if own else core


def _from_sentences(answer: str, pieces: Sequence[str], items: Sequence[Sentence], count: int) -> str:
    """The answer with the heads of the item sentences it lacks added, when it names two of them or more
    (and, the number of items unknown, at least half of them)."""
    texts = [s.simplified for s in items]
    named = set().union(*(_named(p, texts, texts, _MIN_SENTENCE_MATCH) for p in pieces))
    if len(named) < 2 or len(named) == len(items) or (not count and len(named) * 2 < len(items)):
        return answer
    missing = [item_name(s.simplified).strip(_QUOTES) for i, s in enumerate(items) if i not in named]
    return "；".join([answer.rstrip("。；;，, "), *missing])

