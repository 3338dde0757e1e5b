"""Chunk: split a clean document at Chinese section headings; size pieces at sentence ends.

Every chunk keeps its section path (``一、… > （二）… > 1.…``) and its span in the original file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from rag.injection import addresses_assistant
from rag.normalize import title_lines_of
from rag.types import Chunk, CleanDocument, Sentence

_NUM = "一二三四五六七八九十百零〇两"
# (level, pattern) — a smaller level is a bigger section. Order matters: first match wins.
HEADINGS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (1, re.compile(rf"第[{_NUM}\d]{{1,4}}[章编]")),
    (2, re.compile(rf"第[{_NUM}\d]{{1,4}}[节節]")),
    (4, re.compile(rf"[{_NUM}]{{1,3}}、")),
    (5, re.compile(rf"[（(][{_NUM}]{{1,3}}[）)]")),
    (6, re.compile(r"\d{1,2}(?:[.．](?!\d)|、)")),
    (7, re.compile(r"[（(]\d{1,2}[）)]")),
    (8, re.compile(rf"第[{_NUM}\d]{{1,4}}[条條]")),
)
# An unnumbered short title line ranks above 一、 so that it closes numbered sections.
TITLE_LEVEL = 3
_TITLE_MAX = 40
_SENTENCE_ENDS = "。！？；!?;"
_WORDY = re.compile(r"[\u3400-\u9fffA-Za-z]")
MAX_SENTENCE = 150  # a longer sentence is cut at clause marks: it competes for a small prompt budget
_CLAUSE_ENDS = "，,、："


@dataclass(frozen=True)
class ChunkerConfig:
    max_chars: int = 360
    min_chars: int = 80


@dataclass(frozen=True)
class _Piece:
    path: tuple[str, ...]
    start: int  # clean offsets
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def heading(line: str, doc_title_lines: frozenset[str] = frozenset(), structural: int = 0) -> tuple[float, str] | None:
    """``(level, title)`` when ``line`` opens a section, else None. ``structural`` is the level (1–9) the
    file's markup gives the line (Word heading style, ``<hN>``, ``#``), 0 when none."""
    for level, pattern in HEADINGS:
        if pattern.match(line):
            title = re.split(r"[。！？；：:]", line, maxsplit=1)[0]
            return level, title[:_TITLE_MAX]
    if line in doc_title_lines:
        return None
    if structural:  # between 第X节 and 一、, in the markup's order: <h2> holds <h3>
        return structural_level(structural), line[:_TITLE_MAX]
    if _is_section_title(line):
        return TITLE_LEVEL, line
    return None


def structural_level(markup_level: int) -> float:
    """The chunker level of a heading the markup marks (and no numbering names): 2.1 for level 1…"""
    return TITLE_LEVEL - 1 + min(markup_level, 9) / 10


def _is_section_title(line: str) -> bool:
    """A short line without sentence marks: an unnumbered title (a table row ``a | b`` is not one)."""
    return 0 < len(line) <= _TITLE_MAX and not re.search(r"[。！？；!?;，,：:]| \| ", line) and \
        bool(_WORDY.search(line))


def chunk_document(doc: CleanDocument, config: ChunkerConfig = ChunkerConfig()) -> list[Chunk]:
    """Split ``doc`` into section-aware chunks whose spans index the original text."""
    pieces = _sections(doc)
    pieces = [p for s in pieces for p in _split(doc.clean, s, config.max_chars)]
    pieces = _merge_small(pieces, config)
    return [_to_chunk(doc, p) for p in pieces]


def _sections(doc: CleanDocument) -> list[_Piece]:
    """One piece per section: from its heading line to the next heading."""
    title_lines = frozenset(title_lines_of(doc.clean))
    marked = dict(doc.headings)
    stack: list[tuple[float, str]] = []
    pieces: list[_Piece] = []
    start, pos = 0, 0
    path: tuple[str, ...] = ()
    previous_was_title = False
    for line in doc.clean.split("\n"):
        found = heading(line, title_lines, marked.get(doc.offsets[pos], 0) if line else 0)
        if found:
            level, title = found
            if level == TITLE_LEVEL and previous_was_title:
                level = stack[-1][0] + 0.5  # a title right under a title is its subtitle
            if pos > start:
                pieces.append(_Piece(path, start, pos - 1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            start, path = pos, tuple(t for _, t in stack)
        previous_was_title = found is not None and found[0] == TITLE_LEVEL
        pos += len(line) + 1
    if len(doc.clean) > start:
        pieces.append(_Piece(path, start, len(doc.clean)))
    return pieces


def sentence_bounds(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:end]``: split after 。！？； and at line breaks."""
    bounds: list[tuple[int, int]] = []
    s = start
    for i in range(start, end):
        if text[i] == "\n":
            if i > s:
                bounds.append((s, i))
            s = i + 1
        elif text[i] in _SENTENCE_ENDS:
            bounds.append((s, i + 1))
            s = i + 1
    if end > s:
        bounds.append((s, end))
    return [(a, b) for a, b in bounds if text[a:b].strip()]


def _split(text: str, piece: _Piece, max_chars: int) -> list[_Piece]:
    """Pack whole sentences into pieces of at most ``max_chars``."""
    if piece.size <= max_chars:
        return [piece]
    spans = [s for a, b in sentence_bounds(text, piece.start, piece.end)
             for s in hard_split(text, a, b, max_chars)]
    out: list[_Piece] = []
    cur_start, cur_end = spans[0]
    for a, b in spans[1:]:
        if b - cur_start > max_chars:
            out.append(_Piece(piece.path, cur_start, cur_end))
            cur_start = a
        cur_end = b
    out.append(_Piece(piece.path, cur_start, cur_end))
    return out


def hard_split(text: str, a: int, b: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut an over-long sentence at clause marks (or anywhere) so no span exceeds ``max_chars``."""
    spans = []
    while b - a > max_chars:
        window = text[a:a + max_chars]
        cut = max(window.rfind(c) for c in _CLAUSE_ENDS)
        cut = a + (cut + 1 if cut > max_chars // 3 else max_chars)
        spans.append((a, cut))
        a = cut
    spans.append((a, b))
    return spans


def _merge_small(pieces: list[_Piece], config: ChunkerConfig) -> list[_Piece]:
    """Merge pieces under ``min_chars`` into a neighbour: one of the same section first (the tail of a
    split section), then the next or previous piece under the same parent section."""
    limit = config.max_chars + config.min_chars
    out = list(pieces)
    i = 0
    while i < len(out):
        if out[i].size >= config.min_chars or len(out) == 1:
            i += 1
            continue
        target = _merge_target(out, i, limit)
        if target is None:
            i += 1
            continue
        a, b = sorted((i, target))
        out[a:b + 1] = [_join(out[a], out[b])]
        i = a
    return out


def _merge_target(out: list[_Piece], i: int, limit: int) -> int | None:
    neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(out)]
    fits = [j for j in neighbours if max(out[i].end, out[j].end) - min(out[i].start, out[j].start) <= limit]
    same = [j for j in fits if out[j].path == out[i].path]
    if same:
        return same[0]
    for j in sorted(fits, reverse=True):  # forward first: a heading belongs with what follows it
        if _same_parent(out[min(i, j)], out[max(i, j)]):
            return j
    return None


def _same_parent(a: _Piece, b: _Piece) -> bool:
    """Siblings, or a section and its own subsection."""
    return a.path[:-1] == b.path[:-1] or a.path == b.path[:-1] or b.path == a.path[:-1]


def _join(a: _Piece, b: _Piece) -> _Piece:
    shorter, longer = sorted((a.path, b.path), key=len)
    if longer[:len(shorter)] == shorter:  # a heading merged with its first child: keep the detail
        path = longer if max(a, b, key=lambda p: p.size).path == longer else shorter
    else:
        common = 0
        while common < len(shorter) and a.path[common] == b.path[common]:
            common += 1
        path = shorter[:common]
    return _Piece(path, a.start, b.end)


def _to_chunk(doc: CleanDocument, p: _Piece) -> Chunk:
    start, end = strip_span(doc.clean, p.start, p.end)
    orig_start, orig_end = doc.span(start, end)
    text = doc.clean[start:end]
    digest = hashlib.sha1(f"{doc.doc_id}\0{orig_start}\0{orig_end}\0{text}".encode()).hexdigest()[:16]
    # Text before the first heading, and a document without headings, sits under the document's title.
    section = p.path or ((doc.title,) if doc.title else ())
    return Chunk(chunk_id=digest, doc_id=doc.doc_id, start=orig_start, end=orig_end, section=section,
                 text=text, simplified=doc.simplified[start:end], title=doc.title,
                 clean_start=start, clean_end=end)


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Narrow ``[start, end)`` so that it neither starts nor ends with white space."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def chunk_sentences(doc: CleanDocument, chunk: Chunk) -> tuple[Sentence, ...]:
    """The sentences of a chunk (at most ``MAX_SENTENCE`` characters each), located in the original file.
    Computed once at ingest and stored; the answer path reads them. Sentences that address the assistant
    (``rag.injection``) are flagged here and left out: they are never evidence."""
    out: list[Sentence] = []
    for a, b in sentence_bounds(doc.clean, chunk.clean_start, chunk.clean_end):
        for s, e in hard_split(doc.clean, a, b, MAX_SENTENCE):
            s, e = strip_span(doc.clean, s, e)
            if e > s and not addresses_assistant(doc.simplified[s:e]):  # injected instructions: never evidence
                out.append(Sentence(doc.doc_id, doc.offsets[s], doc.offsets[e - 1] + 1, doc.clean[s:e],
                                    doc.simplified[s:e], chunk.section_path, 0.0))
    return tuple(out)
