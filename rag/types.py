"""Frozen dataclasses that carry data from one pipeline stage to the next.

Offsets (``start``/``end``) always index a document's extracted text: for ``.txt``/``.md`` the decoded file
itself, for PDF, Word and HTML the text their reader extracted (stored with the index). Clean and Simplified
text are derived from it and carry a map back.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """A source file's extracted text. ``doc_id`` is its path relative to the corpus root; ``sha256`` is
    of the file's bytes. ``pages[i]`` is the offset where page ``i + 1`` starts (PDF and images);
    ``headings`` holds ``(offset, level)`` of structural headings (Word styles, HTML ``<hN>``, Markdown
    ``#``). ``title`` is the title the format declares (``""``: none); ``ocr_pages`` are the 1-based
    pages read by OCR, ``empty_pages`` those without text."""

    doc_id: str
    text: str
    sha256: str
    pages: tuple[int, ...] = ()
    headings: tuple[tuple[int, int], ...] = ()
    title: str = ""
    ocr_pages: tuple[int, ...] = ()
    empty_pages: tuple[int, ...] = ()


@dataclass(frozen=True)
class CleanDocument:
    """A document with junk removed. ``offsets[i]`` is the original index of ``clean[i]``;
    ``simplified`` is ``clean`` in Simplified script, aligned character for character."""

    doc_id: str
    original: str
    clean: str
    simplified: str
    offsets: tuple[int, ...]
    title: str
    headings: tuple[tuple[int, int], ...] = ()

    def span(self, clean_start: int, clean_end: int) -> tuple[int, int]:
        """Original ``(start, end)`` of the clean slice ``[clean_start, clean_end)``."""
        return self.offsets[clean_start], self.offsets[clean_end - 1] + 1


@dataclass(frozen=True)
class Chunk:
    """A passage of one section. ``text`` is clean text in the source's script; ``simplified`` is used
    for matching; ``clean_start``/``clean_end`` locate it in the clean document."""

    chunk_id: str
    doc_id: str
    start: int
    end: int
    section: tuple[str, ...]
    text: str
    simplified: str
    title: str = ""
    clean_start: int = 0
    clean_end: int = 0

    @property
    def section_path(self) -> str:
        return " > ".join(self.section)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the scores that made it."""

    chunk: Chunk
    score: float
    dense: float = 0.0
    lexical: float = 0.0


@dataclass(frozen=True)
class Sentence:
    """One sentence of a retrieved chunk, located in the original file."""

    doc_id: str
    start: int
    end: int
    text: str
    simplified: str
    section: str
    score: float = 0.0


@dataclass(frozen=True)
class Citation:
    """A verified pointer to the exact characters that support an answer. ``page`` (1-based, where the
    span starts) and ``page_end`` (only when the span crosses a page) are set for paged documents (PDF)."""

    doc_id: str
    start: int
    end: int
    text: str
    section: str
    page: int | None = None
    page_end: int | None = None


@dataclass(frozen=True)
class Answer:
    """The reply to a question."""

    text: str
    citations: tuple[Citation, ...]
    refused: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    context: tuple[Sentence, ...] = ()  # the sentences the model was shown; empty when it was not asked
