"""PDF (pypdfium2): the text layer of each page, or OCR of the page's image where it has none.

A page keeps its text layer when it has one; a page without (a scan: an image and fewer than
``_MIN_PAGE_CHARS`` characters) is rendered and recognised (``ocr``), up to ``Limits.max_ocr_pages``
pages. Either way the lines go to ``layout.assemble``, which joins layout line breaks, drops running
headers, footers and page numbers, and records where each page starts in the extracted text; the text is
what offsets index. ``ocr_pages`` and ``empty_pages`` say which pages were recognised and which are blank.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from rag.errors import DocumentError
from rag.formats import ocr
from rag.formats.base import Extracted, Limits
from rag.formats.layout import Line, Page, assemble, lead

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (pages recognised, pages to recognise)

_UNMAPPED_SHARE = 0.05
# A page with fewer characters in its text layer than this, and an image on it, is a scan (a text layer of
# a page number or a stamp is no reading of the page).
_MIN_PAGE_CHARS = 20
_MAX_DPI = 300  # small pages are rendered at most this fine (large ones to ocr.MAX_SIDE pixels)
# Metadata titles that name a file or a tool's placeholder, not the document ("page.html", "Microsoft
# Word - 文档1.docx", "untitled").
_PLACEHOLDER_TITLE = re.compile(r"\.[A-Za-z0-9]{1,5}$|^(?:untitled|无标题|未命名|新建)", re.IGNORECASE)
# PDFium is not thread-safe; uploads are read on request threads while `rag ingest` may run in another.
_PDFIUM = threading.Lock()


def read_pdf(data: bytes, name: str, limits: Limits, progress: Progress | None = None) -> Extracted:
    if b"%%EOF" not in data[-2048:]:
        raise DocumentError(f"{name}: truncated or corrupt PDF (no end-of-file marker)")
    with _PDFIUM:
        pdf = _open(data, name)
    try:
        with _PDFIUM:
            if len(pdf) > limits.max_pages:
                raise DocumentError(f"{name}: {len(pdf):,} pages; the limit is {limits.max_pages:,}")
            pages = [_read_page(pdf[i]) for i in range(len(pdf))]
            scans = [i for i, page in enumerate(pages) if _scanned(page, pdf[i])]
            title = _metadata_title(pdf)
        check_ocr_pages(len(scans), limits, name)
        _check_unmapped([page for i, page in enumerate(pages) if i not in scans], name)
        for done, i in enumerate(scans, 1):
            with _PDFIUM:  # PDFium renders under the lock; the recogniser runs outside it
                image, scale = render(pdf[i])
            pages[i] = ocr.read_page(image, scale, ocr.recogniser())
            if progress:
                progress(done, len(scans))
    finally:
        with _PDFIUM:
            pdf.close()
    if not any(page.lines for page in pages):
        raise DocumentError(f"{name}: no text on any of its {len(pages)} pages (blank, or images without "
                            "recognisable text)")
    extracted = assemble(pages)
    log.info("pdf %s: %d pages, %d read by OCR, %d empty", name, len(pages), len(scans), len(extracted.empty_pages))
    return dataclasses.replace(extracted, title=title or extracted.title)


def check_ocr_pages(count: int, limits: Limits, name: str) -> None:
    """Refuse a file with more pages to recognise than ``limits.max_ocr_pages`` before any OCR runs."""
    if count > limits.max_ocr_pages:
        raise DocumentError(f"{name}: {count:,} pages without a text layer need OCR; the limit is "
                            f"{limits.max_ocr_pages:,} (RAG_MAX_OCR_PAGES)")


def _check_unmapped(pages: list[Page], name: str) -> None:
    chars = sum(p.chars for p in pages)
    unmapped = sum(p.unmapped for p in pages)
    if unmapped > _UNMAPPED_SHARE * chars:
        raise DocumentError(f"{name}: {unmapped} of {chars} characters have no Unicode mapping in the PDF's fonts")


def has_scans(data: bytes, limits: Limits) -> bool:
    """Whether a PDF has pages to recognise (cheaply: the text layer is counted, not laid out); False for
    a file whose reading fails at once (PDFium cannot open it, too many pages)."""
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError:
            return False
        try:
            if len(pdf) > limits.max_pages:
                return False
            for i in range(len(pdf)):
                page = pdf[i]
                textpage = page.get_textpage()
                chars = len("".join(textpage.get_text_range().split()))
                textpage.close()
                if _scanned(Page((), 0.0, chars=chars), page):
                    return True
            return False
        finally:
            pdf.close()


def _scanned(page: Page, pdf_page: pdfium.PdfPage) -> bool:
    """No usable text layer but something drawn: an image, or (with no text at all) any object."""
    if page.chars >= _MIN_PAGE_CHARS:
        return False
    if page.chars == 0 and pdfium_c.FPDFPage_CountObjects(pdf_page.raw) > 0:
        return True
    return next(iter(pdf_page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])), None) is not None


def render(page: pdfium.PdfPage) -> tuple[np.ndarray, float]:
    """The page as a grayscale image of at most ``ocr.MAX_SIDE`` pixels on its long side (whatever size its
    box claims), and the scale in pixels per point."""
    started = time.perf_counter()
    width, height = page.get_size()
    scale = min(ocr.MAX_SIDE / max(width, height, 1.0), _MAX_DPI / 72)
    image = page.render(scale=scale, grayscale=True).to_numpy()
    log.debug("pdf: rendered a page at %.0f dpi in %.2f s", scale * 72, time.perf_counter() - started)
    return np.ascontiguousarray(image.reshape(image.shape[0], image.shape[1])), scale


def _metadata_title(pdf: pdfium.PdfDocument) -> str:
    title = " ".join((pdf.get_metadata_value("Title") or "").split())
    return "" if _PLACEHOLDER_TITLE.search(title) else title


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
                          min(b[1] for b in boxes), width, *lead(current)))
    current.clear()


