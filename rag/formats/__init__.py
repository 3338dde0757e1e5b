"""Formats: turn a file's bytes into a ``Document`` whose text is what chunk and citation offsets index.

One reader per format (``text``, ``markdown``, ``html``, ``docx``, ``pdf``, ``image``), chosen by the file
name's extension and confirmed by the content's magic bytes: a ``.txt`` that is really a PDF is an error,
not a guess. Every failure is a ``DocumentError`` that names the file and the reason. Scanned PDF pages
and images are read by OCR (``ocr``), which takes seconds a page: those readers report progress per page.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.errors import DocumentError
from rag.formats.base import Extracted, Limits
from rag.types import Document

log = logging.getLogger(__name__)

Reader = Callable[[bytes, str, Limits], Extracted]
Progress = Callable[[int, int], None]  # (pages recognised by OCR, pages to recognise)
PagedReader = Callable[[bytes, str, Limits, Progress | None], Extracted]
DEFAULT_LIMITS = Limits()

# extension → format name
FORMATS = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
           ".docx": "docx", ".pdf": "pdf", ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image",
           ".tiff": "image"}
EXTENSIONS = tuple(FORMATS)
_BINARY = {"pdf": "PDF", "docx": "DOCX", "image": "an image"}  # formats the magic bytes confirm, as named
# The magic bytes of the images we read.
_IMAGE_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"II*\x00", "a TIFF image"),
                (b"MM\x00*", "a TIFF image"))
# What the magic bytes of a format we do not read say it is.
_FOREIGN_MAGIC = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Word/Office .doc file (save it as .docx)"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"), (b"Rar!", "a RAR archive"), (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"{\\rtf", "an RTF file"),
)


def _readers() -> dict[str, Reader]:
    """Format name → reader; imported lazily so that reading text never loads PDFium."""
    from rag.formats.docx import read_docx
    from rag.formats.html import read_html
    from rag.formats.markdown import read_markdown
    from rag.formats.text import read_text

    return {"text": read_text, "markdown": read_markdown, "html": read_html, "docx": read_docx}


def _paged_readers() -> dict[str, PagedReader]:
    """Formats whose pages may need OCR, which report progress page by page."""
    from rag.formats.image import read_image
    from rag.formats.pdf import read_pdf

    return {"pdf": read_pdf, "image": read_image}


@dataclass(frozen=True)
class Skipped:
    """A file that was not ingested, and why."""

    doc_id: str
    reason: str


def format_of(name: str) -> str:
    """The format a file name claims; ``DocumentError`` for an extension we do not read."""
    fmt = FORMATS.get(Path(name).suffix.lower())
    if fmt is None:
        raise DocumentError(f"{name}: unsupported file type; accepted: {', '.join(EXTENSIONS)}")
    return fmt


def sniff(data: bytes) -> str | None:
    """The format the content says it is (``pdf``, ``docx`` for any zip, ``image``), a description of a
    foreign binary format, or None for text."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf")
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "docx"
    if any(head.startswith(magic) for magic, _ in _IMAGE_MAGIC):
        return "image"
    for magic, what in _FOREIGN_MAGIC:
        if head.startswith(magic):
            return what
    return None


def _described(data: bytes, found: str | None) -> str:
    """What the content is, for a message: ``a PDF``, ``a PNG image``, ``text``, a foreign format."""
    if found == "image":
        head = data[:16]
        return next(what for magic, what in _IMAGE_MAGIC if head.startswith(magic))
    if found in _BINARY:
        return "a " + _BINARY[found]
    return found or "text"


def detect(data: bytes, name: str, filename: str | None = None) -> str:
    """The format to read ``data`` as: the extension's (of ``filename``, else ``name``), when the content
    agrees with it. Messages name the file ``name``."""
    claimed = format_of(filename or name)
    found = sniff(data)
    if claimed in _BINARY and found != claimed:
        raise DocumentError(f"{name}: the name says {_BINARY[claimed]} but the content is {_described(data, found)}")
    if claimed not in _BINARY and found is not None:
        what = _described(data, found) + (" file" if found in ("pdf", "docx") else "")
        raise DocumentError(f"{name}: the name says {claimed} but the content is {what}")
    return claimed


def needs_ocr(data: bytes, filename: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Whether reading the file runs OCR: an image, or a PDF with pages without a text layer."""
    claimed, found = FORMATS.get(Path(filename).suffix.lower()), sniff(data)
    if claimed == found == "image":
        return True
    if claimed == found == "pdf":
        from rag.formats.pdf import has_scans

        return has_scans(data, limits)
    return False


def extract(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS, filename: str | None = None,
            progress: Progress | None = None) -> Extracted:
    """Read ``data`` as the format its name and content agree on; ``progress`` hears of each OCR'd page."""
    fmt = detect(data, name, filename)
    paged = _paged_readers()
    extracted = paged[fmt](data, name, limits, progress) if fmt in paged else _readers()[fmt](data, name, limits)
    if not extracted.text.strip():
        raise DocumentError(f"{name}: no text found in the file")
    return extracted


def read_bytes(data: bytes, doc_id: str, limits: Limits = DEFAULT_LIMITS, filename: str | None = None,
               progress: Progress | None = None) -> Document:
    """A ``Document`` from a file's bytes; its ``text`` is the extracted text that offsets index. The
    format comes from ``filename`` (default: ``doc_id``) and the content."""
    extracted = extract(data, doc_id, limits, filename, progress)
    return Document(doc_id=doc_id, text=extracted.text, sha256=hashlib.sha256(data).hexdigest(),
                    pages=extracted.pages, headings=extracted.headings, title=extracted.title,
                    ocr_pages=extracted.ocr_pages, empty_pages=extracted.empty_pages)


def read_document(path: Path, doc_id: str, limits: Limits = DEFAULT_LIMITS) -> Document:
    """Read one file into a ``Document``."""
    return read_bytes(path.read_bytes(), doc_id, limits, path.name)


def find_files(root: Path) -> Iterator[tuple[Path, str]]:
    """Yield ``(path, doc_id)`` for every file of a known format under ``root`` (or ``root`` itself)."""
    if root.is_file():
        yield root, root.name
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in FORMATS and not path.name.startswith("."):
            yield path, path.relative_to(root).as_posix()


def load_documents(roots: Iterable[Path], limits: Limits = DEFAULT_LIMITS) -> tuple[list[Document], list[Skipped]]:
    """Read every file under ``roots``; a file that fails is reported, the rest still load."""
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for root in roots:
        if not root.exists():
            raise DocumentError(f"{root}: no such file or folder")
        for path, doc_id in find_files(root):
            try:
                documents.append(read_document(path, doc_id, limits))
            except (DocumentError, OSError) as exc:
                log.warning("skipped %s: %s", doc_id, exc)
                skipped.append(Skipped(doc_id, str(exc)))
    return documents, skipped


def page_span(pages: Sequence[int], start: int, end: int) -> tuple[int | None, int | None]:
    """1-based ``(page, page_end)`` of the span ``[start, end)``: ``page_end`` only when it crosses a
    page; ``(None, None)`` for a document without pages."""
    if not pages:
        return None, None
    first = bisect.bisect_right(pages, start)
    last = bisect.bisect_right(pages, max(start, end - 1))
    return max(first, 1), (last if last > max(first, 1) else None)
