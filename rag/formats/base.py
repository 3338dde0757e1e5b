"""What every format reader returns, and the limits that keep a hostile file from exhausting memory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Caps applied while reading a file (a PDF's pages, a zip's unpacked bytes, the pages read by OCR)."""

    max_pages: int = 2000
    max_unpacked_bytes: int = 200_000_000
    max_ocr_pages: int = 50


@dataclass(frozen=True)
class Extracted:
    """The text a reader extracted from a file, with its structure.

    ``text`` is what offsets index. ``pages[i]`` is the offset where page ``i + 1`` starts (PDF and
    images). ``headings`` maps the offset of a structural heading's first character (Word heading style,
    HTML ``<h1>``…``<h6>``, Markdown ``#``) to its level, 1 for the biggest. ``title`` is the title the
    format declares, which may not be part of the text (HTML ``<title>``, Word's core properties, PDF
    metadata or its first large-font lines, an OCR'd page's first heading line); ``""`` when it declares
    none. ``ocr_pages`` lists the 1-based pages whose text was recognised from their image, and
    ``empty_pages`` those without any text (blank, or an image without text).
    """

    text: str
    pages: tuple[int, ...] = ()
    headings: tuple[tuple[int, int], ...] = ()
    title: str = ""
    ocr_pages: tuple[int, ...] = ()
    empty_pages: tuple[int, ...] = ()


class TextBuilder:
    """Builds extracted text line by line, recording where headings start."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self.headings: list[tuple[int, int]] = []

    @property
    def length(self) -> int:
        return self._length

    def line(self, text: str, heading: int = 0) -> None:
        """Append one line (empty lines are skipped); ``heading`` > 0 marks it as a heading of that level."""
        text = " ".join(text.split())
        if not text:
            return
        if self._parts:
            self._append("\n")
        if heading:
            self.headings.append((self._length, heading))
        self._append(text)

    def _append(self, text: str) -> None:
        self._parts.append(text)
        self._length += len(text)

    def build(self) -> Extracted:
        return Extracted("".join(self._parts), headings=tuple(self.headings))


def table_row(cells: list[str]) -> str:
    """One table row as one line: cells separated by `` | ``, empty and repeated merged cells dropped."""
    out: list[str] = []
    for cell in cells:
        cell = " ".join(cell.split())
        if cell and (not out or out[-1] != cell):
            out.append(cell)
    return " | ".join(out)
