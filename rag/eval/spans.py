"""Citation spans: re-read a cited file and check that cleaning ``file[start:end]`` gives the cited text."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from rag.errors import RagError
from rag.eval.gold import EvalError
from rag.types import Citation

log = logging.getLogger(__name__)

Reader = Callable[[Path, str], str]
Cleaner = Callable[[str], str]


def _read_utf8(path: Path, _doc_id: str) -> str:
    return path.read_text(encoding="utf-8")


def default_span_functions() -> tuple[Reader, Cleaner | None]:
    """``rag.formats``' reader (plain UTF-8 when it is missing) and ``rag.normalize.clean`` (``None``
    when missing: without the ingest cleaner a span cannot be re-derived, so it is not checked)."""
    reader: Reader = _read_utf8
    try:
        read_document = importlib.import_module("rag.formats").read_document
    except ImportError:
        log.warning("rag.formats is not importable; reading cited files as plain UTF-8")
    else:
        def reader(path: Path, doc_id: str) -> str:
            return str(read_document(path, doc_id).text)
    try:
        cleaner: Cleaner | None = importlib.import_module("rag.normalize").clean
    except ImportError:
        log.warning("rag.normalize is not importable; citation spans will not be checked")
        cleaner = None
    return reader, cleaner


class SpanChecker:
    """Re-reads cited files under the corpus folder and checks ``clean(original[start:end]) == text``."""

    def __init__(self, corpus_dir: Path, reader: Reader, cleaner: Cleaner | None) -> None:
        self._root = corpus_dir.resolve()
        self._reader = reader
        self._cleaner = cleaner
        self._texts: dict[str, str | Exception] = {}  # a run cites the same few files again and again

    def check(self, citation: Citation) -> tuple[bool | None, str]:
        """``(valid, problem)``; ``valid`` is ``None`` when spans cannot be checked in this setup."""
        if self._cleaner is None:
            return None, "not checked"
        text = self._text(citation.doc_id)
        if isinstance(text, Exception):
            return False, f"unreadable: {text}"
        if not 0 <= citation.start < citation.end <= len(text):
            return False, f"span outside the file (length {len(text)})"
        if self._cleaner(text[citation.start:citation.end]) != citation.text:
            return False, "text differs from the file"
        return True, ""

    def _text(self, doc_id: str) -> str | Exception:
        if doc_id not in self._texts:
            self._texts[doc_id] = self._read(doc_id)
        return self._texts[doc_id]

    def _read(self, doc_id: str) -> str | Exception:
        path = (self._root / doc_id).resolve()
        if not path.is_relative_to(self._root):  # a doc id from a server must not read outside the corpus
            return EvalError(f"{doc_id} is outside {self._root}")
        try:
            return self._reader(path, doc_id)
        except (OSError, UnicodeDecodeError, RagError) as exc:
            return exc
