"""PDF with a text layer (pypdfium2): per-page text rebuilt into paragraphs, page furniture dropped.

PDFium reports each visual line; a line that runs to the right margin without ending a sentence was
broken by the layout, so it is joined to the next one (also across a page break). Running headers,
footers and page numbers (lines at the top or bottom of the page that repeat on other pages once their
digits are ignored, or that are only a page number) are not part of the extracted text. The extracted
text is what offsets index; ``pages`` records where each page starts in it.
"""

from __future__ import annotations

import logging
import re
import statistics
import threading
from collections import Counter
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from rag.errors import DocumentError
from rag.formats.base import Extracted, Limits

log = logging.getLogger(__name__)

_SENTENCE_END = "。！？；!?;：:"
_PAGE_NUMBER = re.compile(
    r"^(?:[-—–\s]*\d{1,5}[-—–\s]*|第\s*\d+\s*页(?:\s*[/,，]?\s*共\s*\d+\s*页)?|\d+\s*/\s*\d+"
    r"|(?:page|p\.)\s*\d+(?:\s*of\s*\d+)?)$", re.IGNORECASE)
_BAND = 0.12  # share of the page height at the top and bottom where furniture sits
_REPEAT_SHARE = 0.4  # a furniture line repeats on at least this share of the pages (and on two)
_UNMAPPED_SHARE = 0.05
# PDFium is not thread-safe; uploads are read on request threads while `rag ingest` may run in another.
_PDFIUM = threading.Lock()
_NO_LINE_START = "”’）》」』】〕、，。：；！？,.;:!?)%"
_NO_LINE_END = "“‘（《「『【〔("
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]")


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
    lines: tuple[Line, ...]
    height: float
    unmapped: int
    chars: int


def read_pdf(data: bytes, name: str, limits: Limits) -> Extracted:
    if b"%%EOF" not in data[-2048:]:
        raise DocumentError(f"{name}: truncated or corrupt PDF (no end-of-file marker)")
    with _PDFIUM:
        pdf = _open(data, name)
        try:
            if len(pdf) > limits.max_pages:
                raise DocumentError(f"{name}: {len(pdf):,} pages; the limit is {limits.max_pages:,}")
            pages = [_read_page(pdf[i]) for i in range(len(pdf))]
        finally:
            pdf.close()
    chars = sum(p.chars for p in pages)
    if chars == 0:
        raise DocumentError(f"{name}: no text layer; OCR is not supported")
    unmapped = sum(p.unmapped for p in pages)
    if unmapped > _UNMAPPED_SHARE * chars:
        raise DocumentError(f"{name}: {unmapped} of {chars} characters have no Unicode mapping in the PDF's fonts")
    return assemble(pages)


def _open(data: bytes, name: str) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise DocumentError(f"{name}: the PDF is encrypted (password-protected); remove the password "
                                "and upload it again") from exc
        raise DocumentError(f"{name}: corrupt PDF ({exc})") from exc


def _read_page(page: pdfium.PdfPage) -> Page:
    textpage = page.get_textpage()
    count = textpage.count_chars()
    codes = [pdfium_c.FPDFText_GetUnicode(textpage.raw, i) for i in range(count)]
    lines: list[Line] = []
    current: list[tuple[str, tuple[float, float, float, float]]] = []
    unmapped = chars = 0
    for i, code in enumerate(codes):
        char = chr(code) if code else "\ufffd"
        generated = pdfium_c.FPDFText_IsGenerated(textpage.raw, i)
        if char in "\r\n" and generated:
            _close_line(current, lines)
            continue
        if generated and char == " " and _wide(codes, i - 1) and _wide(codes, i + 1) and \
                not (_ideograph(codes[i - 1]) and _ideograph(codes[i + 1])):
            continue  # PDFium's guess of a space next to a full-width mark (”“), drawn with blank sides
        if char == "\ufffd" or 0xE000 <= code <= 0xF8FF:
            unmapped += 1
        if not char.isspace():
            chars += 1
        current.append((char, textpage.get_charbox(i)))
    _close_line(current, lines)
    textpage.close()
    return Page(tuple(lines), page.get_height(), unmapped, chars)


def _wide(codes: list[int], i: int) -> bool:
    return 0 <= i < len(codes) and codes[i] > 0x2000


def _ideograph(code: int) -> bool:
    return 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF


def _close_line(current: list[tuple[str, tuple[float, float, float, float]]], lines: list[Line]) -> None:
    while current and current[-1][0].isspace():
        current.pop()
    while current and current[0][0].isspace():
        current.pop(0)
    text = "".join(c for c, _ in current)
    boxes = [b for c, b in current if not c.isspace() and b[2] > b[0]]
    if text and boxes:
        width = statistics.median([b[2] - b[0] for b in boxes])
        right = max(b[2] for b in boxes)
        if ord(text[-1]) > 0x2000:  # a full-width mark's ink ends before its advance does
            right = max(right, boxes[-1][0] + width)
        lines.append(Line(text, min(b[0] for b in boxes), right, max(b[3] for b in boxes),
                          min(b[1] for b in boxes), width, *_lead(current)))
    current.clear()


def _lead(chars: list[tuple[str, tuple[float, float, float, float]]]) -> tuple[int, float]:
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
    layout = Layout.of([line for lines in body for line in lines])
    parts: list[str] = []
    length = 0
    starts: list[int] = []
    previous: Line | None = None
    for lines in body:
        starts.append(length)
        for n, line in enumerate(lines):
            if previous is not None:
                sep = layout.separator(previous, line, same_page=n > 0)
                parts.append(sep)
                length += len(sep)
            if n == 0:
                starts[-1] = length
            parts.append(line.text)
            length += len(line.text)
            previous = line
    log.debug("pdf: %d pages, %d lines, %d furniture lines", len(pages), sum(map(len, body)), len(drop))
    return Extracted("".join(parts), pages=tuple(starts))


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
        ended = not same_page and previous.text[-1] in _SENTENCE_END
        return full and not indented and not spaced and not ended

    def separator(self, previous: Line, line: Line, same_page: bool) -> str:
        if not self.wraps(previous, line, same_page):
            return "\n"
        if previous.text[-1].isascii() and previous.text[-1].isalnum() and line.text[0].isascii() \
                and line.text[0].isalnum():
            return " "  # a wrapped Latin phrase
        return ""
