"""Ingest: run formats → normalize → chunk → embed for a set of files and write them into the ``Index``.

Incremental: a document whose bytes and chunker settings are unchanged is not touched (no embedding work);
a changed document replaces its rows; a document gone from an ingested folder leaves the index. Nothing
else is rewritten.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rag.chunk import ChunkerConfig, chunk_document, chunk_sentences
from rag.config import Settings
from rag.embed import Embedder, passage_text
from rag.errors import NotReady
from rag.formats import Limits, Skipped, load_documents
from rag.index import DocRecord, DocumentEntry, Index, IndexSpec
from rag.index.store import replace_index, settle_replace, staging_path
from rag.normalize import clean_document
from rag.types import Document

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class IngestReport:
    """What one ingestion did."""

    documents: int
    chunks: int
    embedded: int
    skipped: tuple[Skipped, ...]
    removed: tuple[str, ...]
    seconds: float
    added: tuple[str, ...] = field(default_factory=tuple)

    @property
    def chunks_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (f"{self.documents} documents, {self.chunks} chunks ({self.embedded} embedded), "
                f"{len(self.skipped)} skipped, {len(self.removed)} removed, {self.seconds:.1f} s, "
                f"{self.chunks_per_second:.1f} chunks/s")


def limits(settings: Settings) -> Limits:
    return Limits(max_pages=settings.max_pages, max_unpacked_bytes=settings.max_unpacked_bytes,
                  max_ocr_pages=settings.max_ocr_pages)


def chunker_config(settings: Settings) -> ChunkerConfig:
    return ChunkerConfig(max_chars=settings.chunk_max_chars, min_chars=settings.chunk_min_chars)


def vector_backend(settings: Settings) -> str:
    """The vector backend name the settings select (recorded in the manifest)."""
    return f"faiss-{settings.faiss_index}" if settings.vector_backend == "faiss" else settings.vector_backend


def vector_options(settings: Settings) -> dict[str, object] | None:
    """Where the vector backend keeps its points (connection settings: used, never recorded)."""
    if settings.vector_backend != "qdrant":
        return None
    where = {"url": settings.qdrant_url, "api_key": settings.qdrant_api_key} if settings.qdrant_url else \
        {"path": str(settings.index_path / "qdrant")}
    return {"collection": f"rag-{settings.index_name}", **where}


def index_spec(settings: Settings, embedder: Embedder) -> IndexSpec:
    """What a new index is built with."""
    return IndexSpec(embedder.name, embedder.dim, vector_backend(settings), vector_options(settings),
                     facts=_facts(settings))


def open_index(settings: Settings) -> Index:
    """The index the settings name; fails clearly when it was built with another vector backend."""
    return Index.open(settings.index_path, vector_backend(settings), settings.snapshot_every,
                      vector_options(settings))


def open_or_create(settings: Settings) -> Index | None:
    """The index to ingest into: the existing one, or None (a new one is made) when there is none. An index
    of an older format raises ``IndexOutdated`` (rebuild it)."""
    try:
        return open_index(settings)
    except NotReady:
        return None


def rebuild_paths(paths: Sequence[Path], settings: Settings, embedder: Embedder,
                  *, progress: Progress | None = None) -> tuple[Index, IngestReport]:
    """A new index of the files under ``paths`` (``rag ingest --rebuild``), built beside the current one and
    swapped in when complete: a crash or kill at any point leaves the previous index whole and loadable."""
    root = settings.index_path
    if settings.vector_backend == "qdrant":  # its points live in a collection outside the folder: in place
        log.warning("rebuilding the Qdrant-backed index %s in place (an interrupted rebuild leaves it partial)",
                    root)
        index, report = ingest_paths(paths, settings, embedder, None, progress=progress)
        index.snapshot(force=True)
        return index, report
    staging = settings.model_copy(update={"index_name": staging_path(root).name})
    shutil.rmtree(staging.index_path, ignore_errors=True)
    try:
        index, report = ingest_paths(paths, staging, embedder, None, progress=progress)
        index.snapshot(force=True)
        index.close()
        replace_index(staging.index_path, root)
    except BaseException:
        settle_replace(root)  # the previous index stays (or comes back), the unfinished one goes
        raise
    return open_index(settings), report


def ingest_paths(paths: Sequence[Path], settings: Settings, embedder: Embedder, index: Index | None,
                 *, prune: bool = True, progress: Progress | None = None) -> tuple[Index, IngestReport]:
    """Ingest every file under ``paths`` into ``index`` (a new one at ``settings.index_path`` when None).

    With ``prune``, documents that the index has from one of these folders but are no longer there leave it.
    """
    documents, skipped = load_documents(paths, limits(settings))
    roots = {doc.doc_id: str(root.resolve()) for root in paths for doc in documents if _under(doc, root)}
    gone: set[str] = set()
    if prune and index is not None:
        ingested_roots = {str(p.resolve()) for p in paths}
        present = {d.doc_id for d in documents}
        gone = {d.doc_id for d in index.documents.values() if d.root in ingested_roots and d.doc_id not in present}
    return ingest_documents(documents, roots, settings, embedder, index, remove=gone, skipped=skipped,
                            progress=progress)


def _under(doc: Document, root: Path) -> bool:
    return root.is_dir() and (root / doc.doc_id).is_file() or root.is_file() and root.name == doc.doc_id


def ingest_documents(documents: Sequence[Document], roots: dict[str, str], settings: Settings,
                     embedder: Embedder, index: Index | None, *, remove: set[str] | frozenset[str] = frozenset(),
                     skipped: Sequence[Skipped] = (), progress: Progress | None = None,
                     batch_chunks: int = 1000) -> tuple[Index, IngestReport]:
    """Add or replace ``documents`` and drop ``remove``; only those documents' rows change.

    Documents are committed in batches of about ``batch_chunks`` chunks: an interrupted ingestion keeps
    every batch committed before it, and each committed state is whole. Returns the (same) index.
    """
    started = time.perf_counter()
    config = chunker_config(settings)
    if index is None:
        index = Index.create(settings.index_path, index_spec(settings, embedder), settings.snapshot_every)
    index.check_embedder(embedder.name, embedder.dim)
    manifest = {**index.manifest, **_facts(settings)}
    reusable = index.manifest.get("chunker") == manifest["chunker"]
    embedded, added, pending = 0, [], []
    for doc in documents:
        old = index.documents.get(doc.doc_id)
        if not (reusable and old is not None and old.sha256 == doc.sha256):
            entry = document_entry(doc, config, embedder, roots.get(doc.doc_id, ""))
            pending.append(entry)
            embedded += len(entry.chunks)
            added.append(doc.doc_id)
            if sum(len(e.chunks) for e in pending) >= batch_chunks:
                index.write(pending, meta={"manifest": manifest})
                pending = []
        if progress:
            progress(1)
    if pending or remove:
        index.write(pending, remove=sorted(remove), meta={"manifest": manifest})
    index.snapshot()
    report = IngestReport(len(index.documents), index.chunk_count(), embedded, tuple(skipped), tuple(sorted(remove)),
                          time.perf_counter() - started, tuple(added))
    log.info("ingest: %s", report.summary())
    return index, report


def document_entry(doc: Document, config: ChunkerConfig, embedder: Embedder, root: str = "") -> DocumentEntry:
    """Everything stored for one document: clean forms, chunks, their sentences and vectors."""
    clean = clean_document(doc)
    chunks = chunk_document(clean, config)
    vectors = embedder.embed_documents([passage_text(c) for c in chunks]) if chunks else \
        np.zeros((0, embedder.dim), np.float32)
    record = DocRecord(doc_id=doc.doc_id, title=clean.title, characters=len(doc.text), chunks=len(chunks),
                       sha256=doc.sha256, ingested_at=datetime.now(UTC).isoformat(timespec="seconds"), root=root,
                       pages=doc.pages)
    return DocumentEntry(record, doc.text, clean.clean, clean.simplified, clean.offsets, tuple(chunks),
                         np.asarray(vectors, np.float32), tuple(chunk_sentences(clean, c) for c in chunks))


def _facts(settings: Settings) -> dict[str, object]:
    return {
        "normalization": {"vectors": "l2", "text": "clean (pinyin and junk removed) + OpenCC t2s"},
        "chunker": {"max_chars": settings.chunk_max_chars, "min_chars": settings.chunk_min_chars},
    }
