"""The corpus store: documents, chunks and their sentences in one SQLite file, the index's source of truth.

A document row holds the original text, the clean text with its offset map, the Simplified form, the sha256
and the metadata. A chunk row holds the chunk, its vector and its sentences, split once at ingest; the
answer path reads them and never re-cleans a source or re-splits sentences per question. Chunk rows are
keyed by the chunk id's 64-bit key and stamped with the version that added them; deleting a chunk leaves a
tombstone, so the in-memory vector and lexical parts can catch up from any earlier version.

Every update is one SQLite transaction (WAL, ``synchronous=FULL``): a crash or ``kill -9`` at any point
leaves the last committed version whole.

The schema version is SQLite's ``user_version`` (``FORMAT``); a store written with another schema fails to
open with ``IndexOutdated``, which tells the user to rebuild, before any of its tables is read.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rag.errors import IndexOutdated
from rag.index.keys import chunk_id_of, chunk_key, keys_of
from rag.types import Chunk, Sentence

FILE = "corpus.sqlite"
FORMAT = 2  # the schema version: SQLite's user_version, and the manifest's "format"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, title TEXT, characters INTEGER, chunks INTEGER, sha256 TEXT, ingested_at TEXT,
    root TEXT, pages TEXT, original TEXT, clean TEXT, simplified TEXT, offsets BLOB, version INTEGER);
CREATE TABLE IF NOT EXISTS chunks (
    key INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, ord INTEGER, start INTEGER, "end" INTEGER, section TEXT,
    text TEXT, simplified TEXT, title TEXT, clean_start INTEGER, clean_end INTEGER, vector BLOB,
    sentences TEXT, version INTEGER);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (doc_id, ord);
CREATE INDEX IF NOT EXISTS chunks_by_version ON chunks (version);
CREATE TABLE IF NOT EXISTS tombstones (key INTEGER, version INTEGER, simplified TEXT);
CREATE INDEX IF NOT EXISTS tombstones_by_version ON tombstones (version);
"""
_RECORD_COLUMNS = "doc_id, title, characters, chunks, sha256, ingested_at, root, pages"
_CHUNK_COLUMNS = 'key, doc_id, start, "end", section, text, simplified, title, clean_start, clean_end'


@dataclass(frozen=True)
class DocRecord:
    """What the index knows of one document."""

    doc_id: str
    title: str
    characters: int
    chunks: int
    sha256: str
    ingested_at: str
    root: str = ""
    pages: tuple[int, ...] = ()  # offset where each page starts in the text (PDF only)


@dataclass(frozen=True, eq=False)
class DocumentEntry:
    """Everything stored for one document: its record, text forms, chunks, their vectors and sentences."""

    record: DocRecord
    original: str
    clean: str
    simplified: str
    offsets: tuple[int, ...]
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray
    sentences: tuple[tuple[Sentence, ...], ...]  # per chunk


@dataclass(frozen=True)
class Removed:
    """A chunk that left the corpus: what the other parts need to drop it."""

    chunk_id: str
    simplified: str


class CorpusStore:
    """Reads from any thread (one connection per thread); writes through ``write``, one at a time."""

    def __init__(self, path: Path, create: bool = False) -> None:
        """Open the store at ``path`` (a new one with ``create``); another schema raises ``IndexOutdated``."""
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        if not create:
            check_schema(path)
        with self._db() as db:
            db.executescript(_SCHEMA)
            if create:
                db.execute(f"PRAGMA user_version = {FORMAT}")

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # --- meta --------------------------------------------------------------------------------------
    def meta(self, name: str) -> Any:
        row = self._db().execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    @property
    def version(self) -> int:
        return int(self.meta("version") or 0)

    # --- documents ---------------------------------------------------------------------------------
    def record(self, doc_id: str) -> DocRecord | None:
        row = self._db().execute(f"SELECT {_RECORD_COLUMNS} FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return None if row is None else _record(row)

    def records(self) -> list[DocRecord]:
        rows = self._db().execute(f"SELECT {_RECORD_COLUMNS} FROM documents ORDER BY rowid").fetchall()
        return [_record(r) for r in rows]

    def document_count(self) -> int:
        return int(self._db().execute("SELECT count(*) FROM documents").fetchone()[0])

    def text(self, doc_id: str, form: str = "original") -> str | None:
        """A document's ``original``, ``clean`` or ``simplified`` (clean, Simplified script) text."""
        if form not in ("original", "clean", "simplified"):
            raise ValueError(f"unknown text form {form!r}")
        row = self._db().execute(f"SELECT {form} FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return None if row is None else str(row[0])

    def offsets(self, doc_id: str) -> np.ndarray:
        """Original offset of every clean character."""
        row = self._db().execute("SELECT offsets FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return np.frombuffer(row[0], np.int32) if row else np.zeros(0, np.int32)

    # --- chunks ------------------------------------------------------------------------------------
    def chunk_count(self) -> int:
        return int(self._db().execute("SELECT count(*) FROM chunks").fetchone()[0])

    def chunks(self, ids: Sequence[str]) -> list[Chunk | None]:
        """The chunks with these ids, in that order (None for an id not stored)."""
        found = {r[0]: _chunk(r) for r in self._select(f"SELECT {_CHUNK_COLUMNS} FROM chunks", ids)}
        return [found.get(k) for k in keys_of(ids).tolist()]

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        rows = self._db().execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE doc_id = ? ORDER BY ord",
                                  (doc_id,)).fetchall()
        return [_chunk(r) for r in rows]

    def chunk_ids_of(self, doc_ids: Sequence[str]) -> list[str]:
        marks = ",".join("?" * len(doc_ids))
        rows = self._db().execute(f"SELECT key FROM chunks WHERE doc_id IN ({marks})", list(doc_ids)).fetchall()
        return [chunk_id_of(r[0]) for r in rows]

    def iter_chunks(self, batch: int = 2000) -> Iterator[tuple[Chunk, np.ndarray]]:
        """Every chunk with its vector, document by document (for rebuilds and tests)."""
        columns = ", ".join(f"c.{c.strip()}" for c in _CHUNK_COLUMNS.split(","))
        cursor = self._db().execute(f"SELECT {columns}, c.vector FROM chunks c JOIN documents d USING (doc_id) "
                                    "ORDER BY d.rowid, c.ord")
        while rows := cursor.fetchmany(batch):
            for r in rows:
                yield _chunk(r[:-1]), np.frombuffer(r[-1], np.float32)

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Vectors of these chunks, in that order (a row of zeros for an id not stored)."""
        found = {r[0]: r[1] for r in self._select("SELECT key, vector FROM chunks", ids)}
        rows = [found.get(k) for k in keys_of(ids).tolist()]
        dim = next((len(r) // 4 for r in rows if r is not None), 0)
        return np.stack([np.frombuffer(r, np.float32) if r is not None else np.zeros(dim, np.float32)
                         for r in rows]) if rows else np.zeros((0, dim), np.float32)

    def sentences(self, ids: Sequence[str]) -> list[list[Sentence]]:
        """The sentences of these chunks (split at ingest), in that order."""
        found = {r[0]: r[1:] for r in self._select("SELECT key, doc_id, section, sentences FROM chunks", ids)}
        out: list[list[Sentence]] = []
        for key in keys_of(ids).tolist():
            if key not in found:
                out.append([])
                continue
            doc_id, section, raw = found[key]
            path = " > ".join(json.loads(section))
            out.append([Sentence(doc_id, s, e, t, simp, path, 0.0) for s, e, t, simp in json.loads(raw)])
        return out

    def _select(self, sql: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        keys = list(dict.fromkeys(keys_of(ids).tolist()))
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            rows += self._db().execute(f"{sql} WHERE key IN ({','.join('?' * len(part))})", part).fetchall()
        return rows

    # --- changes since a version -------------------------------------------------------------------
    def added_since(self, version: int, batch: int = 2000) -> Iterator[list[tuple[str, str, str, np.ndarray]]]:
        """Batches of ``(chunk_id, doc_id, simplified, vector)`` for chunks stored after ``version``."""
        cursor = self._db().execute("SELECT c.key, c.doc_id, c.simplified, c.vector FROM chunks c JOIN documents d "
                                    "USING (doc_id) WHERE c.version > ? ORDER BY d.rowid, c.ord", (version,))
        while rows := cursor.fetchmany(batch):
            yield [(chunk_id_of(k), d, s, np.frombuffer(v, np.float32)) for k, d, s, v in rows]

    def removed_since(self, version: int) -> list[Removed]:
        rows = self._db().execute("SELECT key, simplified FROM tombstones WHERE version > ? ORDER BY rowid",
                                  (version,)).fetchall()
        return [Removed(chunk_id_of(k), s) for k, s in rows]

    def changes_since(self, version: int) -> int:
        """How many chunk rows were added or removed after ``version``."""
        db = self._db()
        return int(db.execute("SELECT count(*) FROM chunks WHERE version > ?", (version,)).fetchone()[0]) + \
            int(db.execute("SELECT count(*) FROM tombstones WHERE version > ?", (version,)).fetchone()[0])

    def forget_tombstones(self, upto: int) -> None:
        self._db().execute("DELETE FROM tombstones WHERE version <= ?", (upto,))

    # --- the one write path ------------------------------------------------------------------------
    def write(self, entries: Sequence[DocumentEntry], remove: Sequence[str] = (),
              meta: Mapping[str, Any] | None = None) -> tuple[int, list[Removed]]:
        """Replace the documents of ``entries``, drop ``remove``, set ``meta``: one transaction.
        Returns the new version and the chunks that left."""
        with self._write_lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                version = self.version + 1
                replaced = list(dict.fromkeys([e.record.doc_id for e in entries] + list(remove)))
                gone = self._remove(db, replaced, version)
                for entry in entries:
                    self._insert(db, entry, version)
                for name, value in {**(meta or {}), "version": version}.items():
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, json.dumps(value)))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return version, gone

    @staticmethod
    def _remove(db: sqlite3.Connection, doc_ids: Sequence[str], version: int) -> list[Removed]:
        gone: list[Removed] = []
        for doc_id in doc_ids:
            rows = db.execute("SELECT key, simplified FROM chunks WHERE doc_id = ?", (doc_id,)).fetchall()
            db.executemany("INSERT INTO tombstones VALUES (?, ?, ?)", [(k, version, s) for k, s in rows])
            db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
            db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            gone += [Removed(chunk_id_of(k), s) for k, s in rows]
        return gone

    @staticmethod
    def _insert(db: sqlite3.Connection, e: DocumentEntry, version: int) -> None:
        r = e.record
        db.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (r.doc_id, r.title, r.characters, r.chunks, r.sha256, r.ingested_at, r.root, json.dumps(r.pages),
                    e.original,
                    e.clean, e.simplified, np.asarray(e.offsets, np.int32).tobytes(), version))
        vectors = np.ascontiguousarray(e.vectors, dtype=np.float32)
        db.executemany(
            "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(chunk_key(c.chunk_id), c.doc_id, i, c.start, c.end, json.dumps(c.section, ensure_ascii=False),
              c.text, c.simplified, c.title, c.clean_start, c.clean_end, vectors[i].tobytes(),
              json.dumps([[s.start, s.end, s.text, s.simplified] for s in e.sentences[i]], ensure_ascii=False),
              version)
             for i, c in enumerate(e.chunks)])


def schema_version(path: Path) -> int:
    """The schema version of the store at ``path``: its ``user_version``, or for a store written before that
    was recorded, its manifest's ``format`` (0 when it has neither). Opens read-only; writes nothing."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version or not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
            return version
        row = db.execute("SELECT value FROM meta WHERE name = 'manifest'").fetchone()
        manifest = json.loads(row[0]) if row else None
        return int(manifest.get("format") or 0) if isinstance(manifest, dict) else 0


def check_schema(path: Path) -> None:
    """Raise ``IndexOutdated`` unless the store at ``path`` has this version's schema."""
    try:
        found = schema_version(path)
    except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
        raise IndexOutdated(f"the index at {path.parent} cannot be read ({path.name}: {exc}); rebuild it with "
                            "`rag ingest --rebuild`") from exc
    if found != FORMAT:
        age = "an older" if found < FORMAT else "a newer"
        raise IndexOutdated(f"the index at {path.parent} has {age} format (schema {found}; this version of rag "
                            f"reads schema {FORMAT}); rebuild it with `rag ingest --rebuild`")


def _record(row: tuple[Any, ...]) -> DocRecord:
    doc_id, title, characters, chunks, sha256, ingested_at, root, pages = row
    return DocRecord(doc_id, title, characters, chunks, sha256, ingested_at, root, tuple(json.loads(pages or "[]")))


def _chunk(row: tuple[Any, ...]) -> Chunk:
    key, doc_id, start, end, section, text, simplified, title, clean_start, clean_end = row
    return Chunk(chunk_id_of(key), doc_id, start, end, tuple(json.loads(section)), text, simplified, title,
                 clean_start, clean_end)


V = TypeVar("V")


class _ByDocId(Mapping[str, V]):
    """A read-only mapping ``doc_id -> value`` over a corpus store, read on demand; ``_get`` reads one value."""

    def __init__(self, store: CorpusStore) -> None:
        self._store = store

    def _get(self, doc_id: str) -> V | None:
        raise NotImplementedError

    def __getitem__(self, doc_id: str) -> V:
        value = self._get(doc_id)
        if value is None:
            raise KeyError(doc_id)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter([r.doc_id for r in self._store.records()])

    def __len__(self) -> int:
        return self._store.document_count()


class Records(_ByDocId[DocRecord]):
    """The documents of a corpus store as a read-only mapping ``doc_id -> DocRecord``."""

    def _get(self, doc_id: str) -> DocRecord | None:
        return self._store.record(doc_id)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self._store.record(doc_id) is not None

    def values(self) -> list[DocRecord]:  # type: ignore[override]
        return self._store.records()


class Sources(_ByDocId[str]):
    """Original document texts as a read-only mapping ``doc_id -> text`` (read on demand)."""

    def _get(self, doc_id: str) -> str | None:
        return self._store.text(doc_id)
