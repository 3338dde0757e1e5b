"""Page layout: the lines of a page, with their boxes, rebuilt into paragraphs; page furniture dropped.

Shared by the PDF text layer and OCR. A line that runs to the right margin without ending a sentence was
broken by the layout, so it is joined to the next one (also across a page break). Running headers,
footers and page numbers (lines at the top or bottom of the page that repeat on other pages once their
digits are ignored, or that are only a page number) are not part of the extracted text; ``pages`` records
where each page starts in it.
"""

from __future__ import annotations

import logging
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rag.formats.base import Extracted

log = logging.getLogger(__name__)

SENTENCE_END = "。！？；!?;：:"
_PAGE_NUMBER = re.compile(
    r"^(?:[-—–\s]*\d{1,5}[-—–\s]*|第\s*\d+\s*页(?:\s*[/,，]?\s*共\s*\d+\s*页)?|\d+\s*/\s*\d+"
    r"|(?:page|p\.)\s*\d+(?:\s*of\s*\d+)?)$", re.IGNORECASE)
_TITLE_SIZE = 1.2  # a title line is at least this much taller than the document's median line
_BAND = 0.12  # share of the page height at the top and bottom where furniture sits
_REPEAT_SHARE = 0.4  # a furniture line repeats on at least this share of the pages (and on two)
_NO_LINE_START = "”’）》」』】〕、，。：；！？,.;:!?)%"
_NO_LINE_END = "“‘（《「『【〔("
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]")

Box = tuple[float, float, float, float]  # left, bottom, right, top in points (y grows upwards)


@dataclass(frozen=True)
class Line:
    """One visual line of a page, with its box in PDF points (y grows upwards). ``lead`` is the width
    of the line's first unbreakable unit (a Latin word, a number, a character with its closing mark),
    counted as full-width characters plus narrow ink:
    the previous line ended early when that unit did not fit on it."""

    text: str
    left: float
    right: float
    top: float
    bottom: float
    char_width: float
    lead_wide: int  # full-width characters in the first unbreakable unit
    lead_narrow: float  # and the ink width of its other characters


@dataclass(frozen=True)
class Page:
    """One page's lines in reading order. ``ocr``: recognised from the page's image (its boxes are
    rendered pixels scaled back to points, so its layout is measured apart from text-layer pages)."""

    lines: tuple[Line, ...]
    height: float
    unmapped: int = 0
    chars: int = 0
    ocr: bool = False


def lead(chars: list[tuple[str, Box]]) -> tuple[int, float]:
    """Advance of the first unit a line breaker cannot split: a run of Latin letters, digits and
    punctuation, or one ideograph, with the opening marks before it and the closing marks after it."""
    end = 0
    while end < len(chars) - 1 and chars[end][0] in _NO_LINE_END:
        end += 1
    end += 1
    if chars[0][0] in "(（" and (close := next((i for i, (c, _) in enumerate(chars) if c in ")）"), 0)):
        end = close + 1  # a parenthesised annotation such as `(lǐng)` stays on one line
    elif not _CJK.match(chars[end - 1][0]):
        while end < len(chars) and not _CJK.match(chars[end][0]) and not chars[end][0].isspace():
            end += 1
    while end < len(chars) and chars[end][0] in _NO_LINE_START:
        end += 1
    # a full-width mark's ink is narrower than its advance; a Latin letter's is about its advance
    unit = chars[:end]
    return sum(ord(c) > 0x2000 for c, _ in unit), sum((b[2] - b[0]) * 1.2 for c, b in unit if ord(c) <= 0x2000)


def furniture(pages: list[Page]) -> set[tuple[int, int]]:
    """``(page, line)`` indexes of running headers, footers and page numbers."""
    candidates: dict[tuple[int, int], str] = {}
    for p, page in enumerate(pages):
        for i, line in enumerate(page.lines):
            if line.bottom >= page.height * (1 - _BAND) or line.top <= page.height * _BAND:
                candidates[(p, i)] = re.sub(r"\d+", "#", " ".join(line.text.split()))
    seen = Counter(key for _, key in {(p, key) for (p, _), key in candidates.items()})
    needed = max(2, _REPEAT_SHARE * len(pages))
    return {pos for pos, key in candidates.items()
            if seen[key] >= needed or _PAGE_NUMBER.match(pages[pos[0]].lines[pos[1]].text)}


def assemble(pages: list[Page]) -> Extracted:
    """The extracted text and page starts: body lines in order, layout line breaks joined."""
    drop = furniture(pages)
    body = [[line for i, line in enumerate(page.lines) if (p, i) not in drop] for p, page in enumerate(pages)]
    # Text-layer and OCR'd pages are measured apart: a scan's margins must not change how a text page joins
    layouts = {ocr: Layout.of([line for page, lines in zip(pages, body, strict=True) if page.ocr == ocr
                               for line in lines]) for ocr in (False, True)}
    parts: list[str] = []
    length = 0
    starts: list[int] = []
    previous: Line | None = None
    for page, lines in zip(pages, body, strict=True):
        starts.append(length)
        for n, line in enumerate(lines):
            if previous is not None:
                sep = layouts[page.ocr].separator(previous, line, same_page=n > 0)
                parts.append(sep)
                length += len(sep)
            if n == 0:
                starts[-1] = length
            parts.append(line.text)
            length += len(line.text)
            previous = line
    log.debug("layout: %d pages, %d lines, %d furniture lines", len(pages), sum(map(len, body)), len(drop))
    return Extracted("".join(parts), pages=tuple(starts), title=title_of(pages, drop),
                     ocr_pages=tuple(p + 1 for p, page in enumerate(pages) if page.ocr),
                     empty_pages=tuple(p + 1 for p, lines in enumerate(body) if not lines))


@dataclass(frozen=True)
class Layout:
    """Where the body text's lines start and end, and how far apart its lines are."""

    left: float
    right: float
    pitch: float

    @classmethod
    def of(cls, lines: list[Line]) -> Layout:
        if not lines:
            return cls(0.0, 0.0, 0.0)
        lefts = sorted(line.left for line in lines)
        rights = sorted(line.right for line in lines)  # a high percentile: a few wide lines must not decide
        steps = [a.bottom - b.bottom for a, b in zip(lines, lines[1:], strict=False) if a.bottom > b.bottom]
        return cls(lefts[int(0.1 * (len(lefts) - 1))], rights[int(0.9 * (len(rights) - 1))],
                   statistics.median(steps) if steps else 0.0)

    def wraps(self, previous: Line, line: Line, same_page: bool) -> bool:
        """The layout, not the author, broke ``previous``: it is full (the next line's first unit did not
        fit on it), and the next line is not indented nor set apart like a new paragraph."""
        lead = line.lead_wide * previous.char_width + line.lead_narrow
        full = previous.right + lead + 0.5 * previous.char_width >= self.right
        indented = line.left > self.left + 0.8 * line.char_width
        spaced = same_page and previous.bottom - line.bottom > 1.3 * self.pitch
        # across a page break the gap says nothing: a finished sentence there ends the paragraph
        ended = not same_page and previous.text[-1] in SENTENCE_END
        return full and not indented and not spaced and not ended

    def separator(self, previous: Line, line: Line, same_page: bool) -> str:
        if not self.wraps(previous, line, same_page):
            return "\n"
        if previous.text[-1].isascii() and previous.text[-1].isalnum() and line.text[0].isascii() \
                and line.text[0].isalnum():
            return " "  # a wrapped Latin phrase
        return ""


def title_of(pages: Sequence[Page], drop: set[tuple[int, int]]) -> str:
    """The first page's leading lines set larger than the document's median line (up to two): the title
    its layout shows. ``drop``: the furniture lines, which are not considered."""
    body = [[ln for i, ln in enumerate(page.lines) if (p, i) not in drop] for p, page in enumerate(pages)]
    heights = [ln.top - ln.bottom for lines in body for ln in lines]
    first = next((lines for lines in body if lines), [])
    if not first:
        return ""
    median = statistics.median(heights)
    big: list[str] = []
    for line in first[:2]:
        if line.top - line.bottom < _TITLE_SIZE * median:
            break
        big.append(line.text)
    return " ".join(big)
