"""Frozen dataclasses that carry data from one pipeline stage to the next.

Offsets (``start``/``end``) always index the original decoded file text; clean and Simplified text are
derived from it and carry a map back.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """A decoded source file. ``doc_id`` is its path relative to the corpus root."""

    doc_id: str
    text: str
    sha256: str


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
    """A verified pointer to the exact characters that support an answer."""

    doc_id: str
    start: int
    end: int
    text: str
    section: str


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
