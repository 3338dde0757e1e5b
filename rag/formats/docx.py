"""Word (``.docx``): paragraphs and tables in document order; heading styles become section headings.

A ``.docx`` is a zip; its unpacked size is capped before python-docx opens it (a zip bomb stops there).
"""

from __future__ import annotations

import dataclasses
import io
import re
import zipfile
import zlib

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from rag.errors import DocumentError
from rag.formats.base import Extracted, Limits, TextBuilder, table_row

# "Heading 2", "标题 2" (Chinese Word), "Title"/"标题" (the document title).
_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)
_TITLE_STYLE = frozenset({"title", "标题"})
_CHUNK = 1 << 20


def read_docx(data: bytes, name: str, limits: Limits) -> Extracted:
    check_zip(data, name, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors… on a broken package
        raise DocumentError(f"{name}: corrupt Word file ({type(exc).__name__}: {exc})") from exc
    builder = TextBuilder()
    titled = ""
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            builder.line(block.text, heading_level(block))
            titled = titled or (block.text if _titled(block) else "")
        elif isinstance(block, Table):
            _table(block, builder)
    # The title of the document's properties (File > Info), else its first paragraph in the Title style.
    return dataclasses.replace(builder.build(), title=document.core_properties.title or titled)


def _titled(paragraph: Paragraph) -> bool:
    style = paragraph.style
    return style is not None and (style.name or "").strip().lower() in _TITLE_STYLE


def heading_level(paragraph: Paragraph) -> int:
    """1–9 for a Word heading style (the title style counts as 1), else 0."""
    style = paragraph.style
    while style is not None:
        style_name = (style.name or "").strip()
        if style_name.lower() in _TITLE_STYLE:
            return 1
        if m := _HEADING_STYLE.match(style_name):
            return max(1, int(m.group(1)))
        style = style.base_style  # a custom style based on "Heading 2" is a heading too
    return 0


def _table(table: Table, builder: TextBuilder) -> None:
    for row in table.rows:
        builder.line(table_row([cell.text for cell in row.cells]))


def check_zip(data: bytes, name: str, limits: Limits) -> None:
    """Reject a file that is not a readable Word package, or unpacks to more than the limit."""
    cap = limits.max_unpacked_bytes
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if "word/document.xml" not in {i.filename for i in infos}:
                raise DocumentError(f"{name}: a zip file but not a Word document (no word/document.xml)")
            declared = sum(i.file_size for i in infos)
            if declared > cap:
                raise DocumentError(f"{name}: unpacks to {declared:,} bytes; the limit is {cap:,}")
            unpacked = 0
            for info in infos:  # the declared sizes may lie: count what really comes out
                with archive.open(info) as member:
                    while chunk := member.read(_CHUNK):
                        unpacked += len(chunk)
                        if unpacked > cap:
                            raise DocumentError(f"{name}: unpacks to more than the limit of {cap:,} bytes")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, RuntimeError,
            zlib.error) as exc:
        raise DocumentError(f"{name}: corrupt or truncated Word file ({exc})") from exc
