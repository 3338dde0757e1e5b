"""The index on disk and in memory: the corpus store (SQLite, the source of truth), the vector index and the
lexical index, with the manifest that names the backend of each part.

Layout of ``index/<name>/``::

    corpus.sqlite          documents, chunks (with vectors and sentences), tombstones, manifest, version
    CURRENT                names the snapshot folder of the in-memory parts
    snap-<version>-<id>/   vector index and lexical index as of that version

An update (add, replace or delete documents) is one SQLite transaction that touches only those documents'
rows; the vector and lexical parts change the same rows in memory. Their snapshot is rewritten only after
``snapshot_every`` changed chunks; opening loads the snapshot and replays the few changes made since
(chunks stamped with a later version, tombstones of deleted ones). A crash at any point leaves the last
committed version whole: SQLite commits atomically, a snapshot becomes current by one fsynced rename, and
temporary folders of interrupted snapshots are removed at the next open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexLocked, IndexMismatch, IndexOutdated, NotReady
from rag.index import corpus as corpus_store
from rag.index.corpus import CorpusStore, DocRecord, DocumentEntry, Records, Sources
from rag.index.lexical import LexicalIndex
from rag.index.lock import IndexLock
from rag.index.vectors import VectorIndex, VectorSpec, open_vectors
from rag.types import Chunk, Sentence

log = logging.getLogger(__name__)

POINTER = "CURRENT"
SNAPSHOT_EVERY = 2000
_TMP = ".tmp-"


@dataclass(frozen=True)
class IndexSpec:
    """What a new index is built with; the manifest records it and reopening checks it."""

    embedder: str
    dim: int
    vectors: str = "faiss-flat"
    vector_options: Mapping[str, Any] | None = None  # connection settings: used, never recorded
    facts: Mapping[str, Any] | None = None  # chunker, normalization, … recorded as they are


class Index:
    """The three parts behind one object; reads from any thread, one writer at a time."""

    def __init__(self, root: Path, corpus: CorpusStore, vectors: VectorIndex, lexical: LexicalIndex,
                 version: int, snapshot_version: int, snapshot_every: int = SNAPSHOT_EVERY) -> None:
        self.root = root
        self.corpus = corpus
        self.vectors = vectors
        self.lexical = lexical
        self.version = version
        self.snapshot_version = snapshot_version
        self.snapshot_every = snapshot_every
        self.documents: Mapping[str, DocRecord] = Records(corpus)
        self.sources: Mapping[str, str] = Sources(corpus)
        self._read = threading.Lock()  # guards the in-memory parts while they change
        self._write = threading.Lock()  # one update (and snapshot) at a time
        self._options: Mapping[str, Any] | None = None

    # --- opening -----------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, spec: IndexSpec, snapshot_every: int = SNAPSHOT_EVERY) -> Index:
        """A new empty index at ``root`` (an index already there is replaced)."""
        remove_index(root)
        root.mkdir(parents=True, exist_ok=True)
        corpus = CorpusStore(root / corpus_store.FILE, create=True)
        manifest = {"format": corpus_store.FORMAT,
                    "embedder": {"name": spec.embedder, "dim": spec.dim, "prompt": "passage: "},
                    "parts": {"corpus": "sqlite", "vectors": spec.vectors, "lexical": LexicalIndex.name},
                    **dict(spec.facts or {})}
        corpus.write([], meta={"manifest": manifest, "build": uuid.uuid4().hex[:12]})
        fsync_path(root)
        vectors = open_vectors(VectorSpec(spec.vectors, spec.dim, spec.vector_options))
        index = cls(root, corpus, vectors, LexicalIndex(), corpus.version, 0, snapshot_every)
        index._options = spec.vector_options
        return index

    @classmethod
    def open(cls, root: Path, vectors: str | None = None, snapshot_every: int = SNAPSHOT_EVERY,
             vector_options: Mapping[str, Any] | None = None) -> Index:
        """Open the index at ``root``: load the parts' snapshot and replay the changes made since.

        ``vectors`` names the vector backend the caller expects; an index built with another fails clearly.
        ``vector_options`` are the backend's connection settings (never stored in the manifest).
        """
        path = root / corpus_store.FILE
        if not path.exists() and _previous(root).exists():  # a crash in the middle of ``replace_index``
            with contextlib.suppress(IndexLocked), IndexLock(root).exclusive():
                settle_replace(root)
        if not path.exists():
            if (root / POINTER).exists():
                raise IndexOutdated(f"the index at {root} has an older format (snapshot generations, no corpus "
                                    "store); rebuild it with `rag ingest --rebuild`")
            raise NotReady(f"no index at {root}; build one with `rag ingest`")
        started = time.perf_counter()
        corpus = CorpusStore(path)
        manifest = corpus.meta("manifest")
        built = manifest["parts"]["vectors"]
        if vectors is not None and vectors != built:
            raise IndexMismatch(f"the index at {root} was built with the {built!r} vector backend but the settings "
                                f"select {vectors!r}; set RAG_VECTOR_BACKEND={built} or re-ingest with "
                                "`rag ingest --rebuild`")
        _remove_interrupted(root)
        folder, snapshot_version = _current_snapshot(root)
        spec = VectorSpec(built, int(manifest["embedder"]["dim"]), vector_options)
        index = cls(root, corpus, open_vectors(spec, folder), LexicalIndex.open(folder), snapshot_version,
                    snapshot_version, snapshot_every)
        index._options = vector_options
        replayed = index._replay(snapshot_version)
        log.info("opened index %s: %d chunks, version %d (%d changes replayed) in %.2f s", root,
                 index.vectors.count(), index.version, replayed, time.perf_counter() - started)
        return index

    def _replay(self, since: int) -> int:
        """Bring the in-memory parts from version ``since`` to the corpus store's version."""
        version = self.corpus.version
        removed = self.corpus.removed_since(since)
        changes = len(removed)
        with self._read:
            if removed:
                ids = [r.chunk_id for r in removed]
                self.vectors.delete(ids=ids)
                self.lexical.delete(ids, [r.simplified for r in removed])
            for batch in self.corpus.added_since(since):
                batch = [b for b in batch if not self.lexical.has(b[0])]
                if batch:
                    ids = [b[0] for b in batch]
                    self.vectors.upsert(ids, np.stack([b[3] for b in batch]), [{"doc_id": b[1]} for b in batch])
                    self.lexical.add(ids, [b[2] for b in batch])
                    changes += len(batch)
            self.version = version
        return changes

    def refresh(self) -> bool:
        """Catch up with updates another process committed; True when there were any."""
        if self.corpus.version == self.version:
            return False
        with self._write:
            _, snapshot_version = _current_snapshot(self.root)
            if snapshot_version > self.version:  # tombstones before it are gone: reload the snapshot
                fresh = Index.open(self.root, snapshot_every=self.snapshot_every, vector_options=self._options)
                with self._read:
                    self.vectors, self.lexical, self.version = fresh.vectors, fresh.lexical, fresh.version
                    self.snapshot_version = fresh.snapshot_version
            else:
                self._replay(self.version)
        return True

    # --- facts -------------------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self.corpus.meta("manifest") or {})

    def check_embedder(self, name: str, dim: int) -> None:
        """Fail clearly when the index was built with another embedding model."""
        built = self.manifest["embedder"]
        if built["name"] != name or int(built["dim"]) != dim:
            raise IndexMismatch(
                f"the index was built with embedder {built['name']!r} (dim {built['dim']}) but the current "
                f"embedder is {name!r} (dim {dim}); re-ingest with `rag ingest --rebuild`")

    def chunk_count(self) -> int:
        return self.corpus.chunk_count()

    # --- reads for retrieval and answers -----------------------------------------------------------
    def dense_search(self, vector: np.ndarray, k: int, doc_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        with self._read:
            return self.vectors.search(vector, k, doc_ids)

    def lexical_search(self, query: str, k: int, doc_ids: Sequence[str] | None = None,
                       also: Sequence[str] = ()) -> tuple[list[tuple[str, float]], np.ndarray]:
        """The ``k`` best chunks by BM25 (of ``doc_ids`` only, when given), and the scores of ``also``."""
        within = None if doc_ids is None else self.corpus.chunk_ids_of(doc_ids)
        with self._read:
            return self.lexical.search(query, k, within, also)

    def idf(self, term: str) -> float:
        """BM25 rarity of one lexical term."""
        with self._read:
            return self.lexical.idf(term)

    def word_weight(self, word: str) -> float:
        """Rarity of a word across chunks (the lexical index's document frequencies)."""
        with self._read:
            return self.lexical.weight(word)

    def chunks(self, ids: Sequence[str]) -> list[Chunk | None]:
        return self.corpus.chunks(ids)

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        """A document's chunks in reading order."""
        return self.corpus.chunks_of(doc_id)

    def chunk_vectors(self, ids: Sequence[str]) -> np.ndarray:
        return self.corpus.vectors(ids)

    def sentences(self, ids: Sequence[str]) -> list[list[Sentence]]:
        """The sentences of these chunks, split once at ingest."""
        return self.corpus.sentences(ids)

    def document_text(self, doc_id: str, form: str = "simplified") -> str:
        """A document's clean text in Simplified script (or ``original``/``clean``)."""
        return self.corpus.text(doc_id, form) or ""

    def iter_chunks(self) -> Iterator[tuple[Chunk, np.ndarray]]:
        return self.corpus.iter_chunks()

    def all_chunks(self) -> list[Chunk]:
        """Every chunk in insertion order (tests and tools; never on a request path)."""
        return [c for c, _ in self.corpus.iter_chunks()]

    # --- the one update path -----------------------------------------------------------------------
    def write(self, entries: Sequence[DocumentEntry] = (), remove: Sequence[str] = (),
              meta: Mapping[str, Any] | None = None) -> int:
        """Add or replace the documents of ``entries`` and delete ``remove``: one commit. Returns the version.

        Vectors go in before the commit, so a committed chunk always has its vector; what a crash leaves in
        the vector index beyond the commit is never returned (retrieval reads chunks from the corpus store)
        and is replaced by the next write of that document.
        """
        ids = [c.chunk_id for e in entries for c in e.chunks]
        with self._write, self._read:
            if ids:
                self.vectors.upsert(ids, np.vstack([e.vectors for e in entries]).astype(np.float32),
                                    [{"doc_id": c.doc_id} for e in entries for c in e.chunks])
            try:
                version, gone = self.corpus.write(entries, remove, meta)
            except BaseException:
                self._undo_upsert(entries)
                raise
            staying = set(ids)
            self.vectors.delete(ids=[g.chunk_id for g in gone if g.chunk_id not in staying])
            self.lexical.delete([g.chunk_id for g in gone], [g.simplified for g in gone])
            self.lexical.add(ids, [c.simplified for e in entries for c in e.chunks])
            self.version = version
        return version

    def _undo_upsert(self, entries: Sequence[DocumentEntry]) -> None:
        stored = set(self.corpus.chunk_ids_of([e.record.doc_id for e in entries]))
        fresh = [c.chunk_id for e in entries for c in e.chunks if c.chunk_id not in stored]
        with contextlib.suppress(Exception):
            self.vectors.delete(ids=fresh)

    def snapshot(self, force: bool = False) -> bool:
        """Save the in-memory parts when ``snapshot_every`` chunks changed since the last snapshot (or now,
        with ``force``: the end of a bulk ingest). True when a snapshot was written."""
        with self._write:
            changed = self.corpus.changes_since(self.snapshot_version)
            if (force and (changed or not (self.root / POINTER).exists())) or changed >= self.snapshot_every:
                self._snapshot()
                return True
        return False

    def _snapshot(self) -> None:
        started = time.perf_counter()
        compact = getattr(self.vectors, "compact", None)
        if compact is not None:
            with self._read:
                self.vectors = compact()
        tmp = self.root / f"{_TMP}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        self.vectors.save(tmp)
        self.lexical.save(tmp)
        (tmp / "state.json").write_text(json.dumps({"version": self.version}), "utf-8")
        for f in tmp.iterdir():
            fsync_path(f)
        fsync_path(tmp)
        folder = self.root / f"snap-{self.version:08d}-{uuid.uuid4().hex[:8]}"
        os.rename(tmp, folder)
        fsync_path(self.root)
        pointer = self.root / f".{POINTER}.tmp"
        pointer.write_text(folder.name, "utf-8")
        fsync_path(pointer)
        os.replace(pointer, self.root / POINTER)
        fsync_path(self.root)
        self.snapshot_version = self.version
        self.corpus.forget_tombstones(self.version)
        for child in self.root.iterdir():
            if child.is_dir() and child.name.startswith("snap-") and child != folder:
                shutil.rmtree(child, ignore_errors=True)
        log.info("snapshot %s (%d chunks) in %.2f s", folder.name, self.vectors.count(),
                 time.perf_counter() - started)

    def close(self) -> None:
        self.corpus.close()


def index_version(root: Path) -> str:
    """A cheap token that changes with every committed update of the index under ``root`` ("" when none), and
    with every rebuild (each build has its own id): a running server compares it to notice an update written
    by another process."""
    path = root / corpus_store.FILE
    if not path.exists():
        return ""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = dict(db.execute("SELECT name, value FROM meta WHERE name IN ('version', 'build')").fetchall())
    except sqlite3.DatabaseError:  # another schema, or not a store at all: opening it says what to do
        return "unreadable"
    version = str(json.loads(rows.get("version", "0")))
    return f"{version}-{json.loads(rows['build'])}" if "build" in rows else version


def remove_index(root: Path) -> None:
    """Delete an index (``rag ingest --rebuild``): the corpus store, snapshots and leftovers."""
    if not root.exists():
        return
    for child in root.iterdir():
        if child.name.startswith((corpus_store.FILE, "snap-", "gen-", _TMP, POINTER, f".{POINTER}")):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def staging_path(root: Path) -> Path:
    """Where ``rag ingest --rebuild`` builds the new index of ``root``, beside it."""
    return root.parent / f".{root.name}.rebuild"


def _previous(root: Path) -> Path:
    return root.parent / f".{root.name}.previous"


def replace_index(new: Path, root: Path) -> None:
    """Make the complete index at ``new`` the index at ``root``: the previous one goes aside and the new one in
    by two fsynced renames (the second is the commit point), then the previous one is deleted. A crash between
    the renames leaves the previous index aside, whole: ``settle_replace`` (run by the next writer, or by
    ``Index.open``) puts it back."""
    for path in sorted(new.rglob("*"), reverse=True):  # files, then the folders holding them
        fsync_path(path)
    fsync_path(new)
    previous = _previous(root)
    shutil.rmtree(previous, ignore_errors=True)
    if root.exists():
        os.rename(root, previous)
        fsync_path(root.parent)
    os.rename(new, root)
    fsync_path(root.parent)
    shutil.rmtree(previous, ignore_errors=True)


def interrupted_rebuild(root: Path) -> bool:
    """Whether a rebuild of ``root`` left something to settle (or is running in another process)."""
    return _previous(root).exists() or staging_path(root).exists()


def settle_replace(root: Path) -> None:
    """Finish or undo a ``replace_index`` a crash interrupted and drop an unfinished rebuild; the caller holds
    the index lock (``rag.index.lock``), so no rebuild is running."""
    previous, staging = _previous(root), staging_path(root)
    if previous.exists():
        if root.exists():  # the new index was in: only the deletion of the previous one was cut
            shutil.rmtree(previous, ignore_errors=True)
        else:  # cut between the renames: the previous index comes back
            os.rename(previous, root)
            fsync_path(root.parent)
            log.warning("an interrupted rebuild of %s was rolled back", root)
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)
        log.warning("removed the unfinished rebuild %s", staging)


def _current_snapshot(root: Path) -> tuple[Path | None, int]:
    pointer = root / POINTER
    if not pointer.exists():
        return None, 0
    folder = root / pointer.read_text("utf-8").strip()
    state = folder / "state.json"
    if not state.exists():
        return None, 0
    return folder, int(json.loads(state.read_text("utf-8"))["version"])


def _remove_interrupted(root: Path) -> None:
    """Drop temporary folders of snapshots whose writer is gone (a crash or kill mid-snapshot), snapshots
    older than the current one, and generations of the older format."""
    current = (root / POINTER).read_text("utf-8").strip() if (root / POINTER).exists() else ""
    for child in root.iterdir():
        interrupted = child.name.startswith(_TMP) and not _alive(child.name[len(_TMP):].split("-")[0])
        stale = child.name.startswith("gen-") or child.name.startswith("snap-") and child.name < current
        if interrupted or stale:
            shutil.rmtree(child, ignore_errors=True)


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entries to disk (a folder's fsync makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

