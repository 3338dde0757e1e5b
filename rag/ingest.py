"""Ingest: run formats → normalize → chunk → embed for a set of files and produce a new ``Index``.

Incremental: a document whose bytes and chunker settings are unchanged keeps its chunks and vectors
(no embedding work); a changed document replaces its chunks; a document gone from an ingested folder
leaves the index.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rag.chunk import ChunkerConfig, chunk_document
from rag.config import Settings
from rag.embed import Embedder, passage_text
from rag.formats import Limits, Skipped, load_documents
from rag.normalize import clean_document
from rag.store import DocRecord, Index
from rag.types import Chunk, Document

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
    return Limits(max_pages=settings.max_pages, max_unpacked_bytes=settings.max_unpacked_bytes)


def chunker_config(settings: Settings) -> ChunkerConfig:
    return ChunkerConfig(max_chars=settings.chunk_max_chars, min_chars=settings.chunk_min_chars)


def ingest_paths(paths: Sequence[Path], settings: Settings, embedder: Embedder, previous: Index | None,
                 *, prune: bool = True, progress: Progress | None = None) -> tuple[Index, IngestReport]:
    """Ingest every file under ``paths`` on top of ``previous``; the caller saves the result.

    With ``prune``, documents that ``previous`` had from one of these folders but are no longer there
    leave the index.
    """
    documents, skipped = load_documents(paths, limits(settings))
    roots = {doc.doc_id: str(root.resolve()) for root in paths for doc in documents if _under(doc, root)}
    gone: set[str] = set()
    if prune and previous is not None:
        ingested_roots = {str(p.resolve()) for p in paths}
        present = {d.doc_id for d in documents}
        gone = {d.doc_id for d in previous.documents.values()
                if d.root in ingested_roots and d.doc_id not in present}
    return ingest_documents(documents, roots, settings, embedder, previous, remove=gone,
                            skipped=skipped, progress=progress)


def _under(doc: Document, root: Path) -> bool:
    return root.is_dir() and (root / doc.doc_id).is_file() or root.is_file() and root.name == doc.doc_id


def ingest_documents(documents: Sequence[Document], roots: dict[str, str], settings: Settings,
                     embedder: Embedder, previous: Index | None, *, remove: set[str] | frozenset[str] = frozenset(),
                     skipped: Sequence[Skipped] = (), progress: Progress | None = None) -> tuple[Index, IngestReport]:
    """Add or replace ``documents`` and drop ``remove`` from ``previous``; returns the new index."""
    started = time.perf_counter()
    config = chunker_config(settings)
    manifest = _manifest(settings, embedder)
    reusable = previous is not None and previous.manifest.get("chunker") == manifest["chunker"]
    if previous is not None:
        previous.check_embedder(embedder.name, embedder.dim)
    replaced = {d.doc_id for d in documents} | set(remove)
    kept_rows = [] if previous is None else [r for r, c in enumerate(previous.chunks) if c.doc_id not in replaced]
    chunks = [previous.chunks[r] for r in kept_rows] if previous else []
    vectors = [previous.vectors[kept_rows]] if previous is not None else []
    records = {k: v for k, v in (previous.documents.items() if previous else []) if k not in replaced}
    sources = {k: previous.sources[k] for k in records} if previous else {}
    embedded, added = 0, []
    for doc in documents:
        old = previous.documents.get(doc.doc_id) if previous else None
        if reusable and previous is not None and old is not None and old.sha256 == doc.sha256:
            rows = previous.rows_by_doc.get(doc.doc_id, [])
            doc_chunks, doc_vectors = [previous.chunks[r] for r in rows], previous.vectors[rows]
            record = old
        else:
            doc_chunks, doc_vectors, record = _process(doc, config, embedder, roots.get(doc.doc_id, ""))
            embedded += len(doc_chunks)
            added.append(doc.doc_id)
        chunks.extend(doc_chunks)
        vectors.append(doc_vectors)
        records[doc.doc_id] = record
        sources[doc.doc_id] = doc.text
        if progress:
            progress(1)
    matrix = np.vstack(vectors) if vectors else np.zeros((0, embedder.dim), np.float32)
    manifest["build_seconds"] = round(time.perf_counter() - started, 3)
    index = Index.build(chunks, matrix, records, sources, manifest, settings.faiss_index)
    report = IngestReport(len(records), len(chunks), embedded, tuple(skipped), tuple(sorted(remove)),
                          time.perf_counter() - started, tuple(added))
    log.info("ingest: %s", report.summary())
    return index, report


def _process(doc: Document, config: ChunkerConfig, embedder: Embedder,
             root: str) -> tuple[list[Chunk], np.ndarray, DocRecord]:
    clean = clean_document(doc)
    chunks = chunk_document(clean, config)
    vectors = embedder.embed_documents([passage_text(c) for c in chunks]) if chunks else \
        np.zeros((0, embedder.dim), np.float32)
    record = DocRecord(doc_id=doc.doc_id, title=clean.title, characters=len(doc.text), chunks=len(chunks),
                       sha256=doc.sha256, ingested_at=datetime.now(UTC).isoformat(timespec="seconds"), root=root,
                       pages=doc.pages)
    return chunks, vectors, record


def _manifest(settings: Settings, embedder: Embedder) -> dict[str, object]:
    return {
        "embedder": {"name": embedder.name, "dim": embedder.dim, "prompt": "passage: "},
        "normalization": {"vectors": "l2", "text": "clean (pinyin and junk removed) + OpenCC t2s"},
        "chunker": {"max_chars": settings.chunk_max_chars, "min_chars": settings.chunk_min_chars},
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
