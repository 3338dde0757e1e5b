"""The one index writer: uploads, deletes and folder ingestion as transactions over the corpus folder and
the index, under the cross-process index lock (``rag.index.lock``).

A write is: take the lock, catch up with the index on disk (another process may have saved a newer
generation), write the document file, then save the index. Saving the index is the commit point. A
journal file beside the index names the change in flight, so a failure rolls both back and a crash is
resolved by whoever takes the lock next: the change is kept if the index committed it, undone if not.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.config import Settings
from rag.embed import Embedder
from rag.errors import IndexOutdated, InvalidRequest, NotFound, NotReady, PayloadTooLarge, RagError, StorageError
from rag.formats import EXTENSIONS, read_bytes
from rag.index import DocRecord, Index, index_version
from rag.index.lock import IndexLock
from rag.index.store import fsync_path, interrupted_rebuild, settle_replace
from rag.ingest import IngestReport, ingest_documents, ingest_paths, limits, open_or_create, rebuild_paths
from rag.jobs import Job
from rag.types import Document

log = logging.getLogger(__name__)

NAME_MAX_BYTES = 255  # the longest file name ext4, xfs and btrfs store


class IndexHolder(Protocol):
    """Whoever serves the live index (the service): the writer reads it and swaps in each new one, or, when
    the index on disk cannot be served, ``None`` and why (``problem``: a rebuild fixes it)."""

    @property
    def loaded_index(self) -> Index | None: ...

    @property
    def problem(self) -> IndexOutdated | None: ...

    def swap_index(self, index: Index | None, problem: IndexOutdated | None = None) -> None: ...


class LocalIndex:
    """An ``IndexHolder`` for one-shot commands (``rag ingest``)."""

    def __init__(self) -> None:
        self.loaded_index: Index | None = None
        self.problem: IndexOutdated | None = None

    def swap_index(self, index: Index | None, problem: IndexOutdated | None = None) -> None:
        self.loaded_index, self.problem = index, problem


@dataclass(frozen=True)
class Change:
    """The journal entry of a write in flight. ``aside`` holds the file's previous bytes, if it had any."""

    op: str  # "add" | "delete"
    doc_id: str
    path: str
    sha256: str
    temp: str = ""
    aside: str = ""


def sanitize_name(name: str) -> str:
    """A safe file name for an upload: no folders, no traversal, a known extension, storable length."""
    base = Path(name.replace("\\", "/")).name.strip()
    base = re.sub(r"[^\w.\-\u3400-\u9fff]+", "_", base).lstrip(".")
    if not base or Path(base).suffix.lower() not in EXTENSIONS:
        raise InvalidRequest(f"file name {name!r} is not accepted: use one of {', '.join(EXTENSIONS)}")
    if len(base.encode()) > NAME_MAX_BYTES:
        raise InvalidRequest(f"file name {base[:20]!r}… is {len(base.encode())} bytes long (UTF-8); the limit is "
                             f"{NAME_MAX_BYTES}")
    return base


class IndexWriter:
    """Applies writes to the corpus folder and the index at ``settings.index_path``, one at a time, and hands
    each new index to ``holder``. ``between_batches`` runs between embedding batches of an upload (the
    server lets reads go first there)."""

    def __init__(self, settings: Settings, embedder: Embedder, holder: IndexHolder,
                 between_batches: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.embedder = embedder
        self.holder = holder
        self.between_batches = between_batches
        self.lock = IndexLock(settings.index_path)
        self.journal = settings.index_path.parent / f".{settings.index_path.name}.journal"
        self.version = index_version(settings.index_path) if holder.loaded_index is not None else ""
        self._mutex = threading.Lock()

    # --- the writes --------------------------------------------------------------------------------
    def prepare(self, name: str, data: bytes) -> Document:
        """Check an upload before it is queued: name, size, text. Raises the 4xx error to answer."""
        doc_id = sanitize_name(name)
        limit = self.settings.max_upload_bytes
        if len(data) > limit:
            raise PayloadTooLarge(f"{doc_id} has {len(data):,} bytes; the limit is {limit:,}")
        return read_bytes(data, doc_id, limits(self.settings))

    def add(self, doc: Document, data: bytes, job: Job | None = None) -> DocRecord:
        """Store ``data`` as ``doc.doc_id`` in the corpus folder and index it (replacing a same-named one)."""
        root = self.settings.corpus_dir.resolve()
        path = root / doc.doc_id
        with self._writing():
            root.mkdir(parents=True, exist_ok=True)
            tag = uuid.uuid4().hex[:12]
            change = Change("add", doc.doc_id, str(path), doc.sha256, str(root / f".{tag}.upload"),
                            str(root / f".{tag}.previous") if _exists(path) else "")
            embedder = MeteredEmbedder(self.embedder, doc.doc_id, self.settings, job, self.between_batches)
            index = self._apply(change, lambda: _put_file(change, data),
                                lambda: ingest_documents([doc], {doc.doc_id: str(root)}, self.settings, embedder,
                                                         self.holder.loaded_index)[0])
        return index.documents[doc.doc_id]

    def delete(self, doc_id: str, job: Job | None = None) -> None:
        """Remove a document from the index and its file from the corpus folder."""
        with self._writing():
            current = self.holder.loaded_index
            if current is None or doc_id not in current.documents:
                raise NotFound(f"no document {doc_id!r} in the index")
            record = current.documents[doc_id]
            path = Path(record.root) / doc_id if record.root else Path()
            aside = path.parent / f".{uuid.uuid4().hex[:12]}.deleted" if record.root else Path()
            change = Change("delete", doc_id, str(path) if record.root else "", record.sha256,
                            aside=str(aside) if record.root else "")
            self._apply(change, lambda: _move_aside(change),
                        lambda: ingest_documents([], {}, self.settings, self.embedder, current,
                                                 remove={doc_id})[0])

    def ingest(self, paths: Sequence[Path], *, rebuild: bool = False, progress: Callable[[int], None] | None = None,
               on_wait: Callable[[str], None] | None = None) -> IngestReport:
        """Index every file under ``paths`` on top of the latest index; with ``rebuild``, a new index of these
        files only, swapped in when complete (the previous one stays whole until then)."""
        with self._writing(on_wait, rebuild=rebuild):
            if rebuild:
                index, report = rebuild_paths(paths, self.settings, self.embedder, progress=progress)
            else:
                previous = self.holder.loaded_index or open_or_create(self.settings)
                index, report = ingest_paths(paths, self.settings, self.embedder, previous, progress=progress)
                index.snapshot(force=True)
            self._adopt(index)
        return report

    def refresh(self) -> None:
        """Catch up with the index on disk when another process changed it, and finish an interrupted
        write; skipped while another process holds the lock (the next call tries again)."""
        pending = self.journal.exists() or self.journal.with_name(self.journal.name + ".tmp").exists() or \
            interrupted_rebuild(self.settings.index_path)
        if not pending and index_version(self.settings.index_path) == self.version:
            return
        with self._mutex, contextlib.suppress(RagError), self.lock.exclusive() if pending else self.lock.shared():
            self._sync(recover=pending)

    # --- transaction machinery ---------------------------------------------------------------------
    @contextmanager
    def _writing(self, on_wait: Callable[[str], None] | None = None, rebuild: bool = False) -> Iterator[None]:
        with self._mutex, self.lock.exclusive(self.settings.lock_timeout, on_wait):
            self._sync(recover=True)
            if (problem := self.holder.problem) is not None and not rebuild:
                raise problem  # writing into an index this version cannot read would lose it
            yield

    def _sync(self, recover: bool) -> None:
        """Load the current generation if another process saved one; then settle a journaled change."""
        if recover:
            settle_replace(self.settings.index_path)
        version = index_version(self.settings.index_path)
        if version != self.version:
            problem = None
            try:
                index: Index | None = open_or_create(self.settings) if version else None
            except NotReady:
                index = None
            except IndexOutdated as exc:
                index, problem = None, exc
                log.info("%s", exc)
            self.version = version
            self.holder.swap_index(index, problem)
            log.info("loaded index generation %s written by another process", version or "(none)")
        if recover:
            self.journal.with_name(self.journal.name + ".tmp").unlink(missing_ok=True)  # torn before its rename
        if recover and (change := self._read_journal()) is not None:
            index = self.holder.loaded_index
            record = index.documents.get(change.doc_id) if index is not None else None
            committed = (record is not None and record.sha256 == change.sha256) if change.op == "add" \
                else record is None
            (_finish if committed else _undo)(change)
            self.journal.unlink()
            log.warning("an interrupted %s of %s was %s", change.op, change.doc_id,
                        "completed" if committed else "rolled back")

    def _apply(self, change: Change, touch_files: Callable[[], None], build: Callable[[], Index]) -> Index:
        """Journal ``change``, change the files, build and save the index; undo the files on any failure."""
        self._write_journal(change)
        try:
            touch_files()
            index = build()  # commits the index: the commit point
        except BaseException as exc:
            _undo(change)
            self.journal.unlink()
            error = _as_rag_error(exc, change)
            if error is exc:
                raise
            raise error from exc
        self._adopt(index)
        _finish(change)
        self.journal.unlink()
        _snapshot_if_due(index)
        return index

    def _adopt(self, index: Index) -> None:
        self.holder.swap_index(index)
        self.version = index_version(self.settings.index_path)

    def _write_journal(self, change: Change) -> None:
        temp = self.journal.with_name(self.journal.name + ".tmp")
        _write_synced(temp, json.dumps(asdict(change), ensure_ascii=False).encode())
        os.replace(temp, self.journal)
        fsync_path(self.journal.parent)

    def _read_journal(self) -> Change | None:
        try:
            return Change(**json.loads(self.journal.read_text("utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # torn before its rename: nothing of that change happened yet
            self.journal.unlink()
            return None


class MeteredEmbedder:
    """The embedder, refusing a document over the upload chunk limit before any embedding, and reporting
    progress (chunks embedded of the document's total) to the job batch by batch."""

    def __init__(self, inner: Embedder, doc_id: str, settings: Settings, job: Job | None,
                 between_batches: Callable[[], None] = lambda: None) -> None:
        self.inner, self.doc_id, self.job, self.between_batches = inner, doc_id, job, between_batches
        self.limit, self.batch = settings.max_upload_chunks, settings.embed_batch_size
        self.name, self.dim = inner.name, inner.dim

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) > self.limit:
            raise PayloadTooLarge(f"{self.doc_id} has {len(texts):,} chunks; the limit is {self.limit:,} "
                                  "(RAG_MAX_UPLOAD_CHUNKS)")
        parts = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(texts), self.batch):
            if self.job is not None:
                self.job.progress(start, len(texts))
            self.between_batches()
            parts.append(self.inner.embed_documents(texts[start:start + self.batch]))
        if self.job is not None:
            self.job.progress(len(texts), len(texts))
        return np.vstack(parts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def _snapshot_if_due(index: Index) -> None:
    """Save the in-memory index parts when enough changed; the change itself is already committed, so a
    failure here only means more to replay at the next start."""
    try:
        index.snapshot()
    except OSError:
        log.exception("could not save a snapshot of the index parts; the update is committed")


# --- file steps (each idempotent, so undo and finish also settle a change a crash interrupted) --------
def _put_file(change: Change, data: bytes) -> None:
    path, temp = Path(change.path), Path(change.temp)
    _write_synced(temp, data)
    if change.aside:
        os.replace(path, change.aside)
    os.replace(temp, path)
    fsync_path(path.parent)


def _move_aside(change: Change) -> None:
    if change.path and _exists(Path(change.path)):
        os.replace(change.path, change.aside)
        fsync_path(Path(change.path).parent)


def _undo(change: Change) -> None:
    if change.temp:
        _unlink(Path(change.temp))
    if change.aside:
        if _exists(Path(change.aside)):
            os.replace(change.aside, change.path)  # the previous bytes come back
    elif change.op == "add":
        _unlink(Path(change.path))  # the name was free before this upload


def _finish(change: Change) -> None:
    for leftover in (change.temp, change.aside):
        if leftover:
            _unlink(Path(leftover))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long to exist
        return False


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())




def _as_rag_error(exc: BaseException, change: Change) -> BaseException:
    """What the client is told: the error itself, or a storage error naming the document."""
    if isinstance(exc, RagError) or not isinstance(exc, OSError):
        return exc
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidRequest(f"file name {change.doc_id[:20]!r}… is too long for the corpus folder")
    return StorageError(f"could not {change.op} {change.doc_id}: {exc.strerror or exc}; nothing was changed")
