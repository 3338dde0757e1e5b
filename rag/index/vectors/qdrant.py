"""The distributed vector engine: Qdrant, through its official client (``qdrant-client``).

Where the points live depends on the options (``RAG_QDRANT_URL`` and friends, never recorded in the manifest):

- ``url`` (and ``api_key``): a Qdrant server or cluster; every write is stored by Qdrant at once.
- ``path``: qdrant-client's local mode, persisted under that folder (``index/<name>/qdrant``); one process
  at a time may open it (for a server and ``rag ingest`` at once, run a Qdrant server).
- neither: local mode in memory (tests); ``save`` writes the points into the snapshot folder.

A point's id is the chunk id read as an unsigned 64-bit integer (exact both ways); its payload holds the
``doc_id``, so the ``doc_ids`` filter and deleting a document are payload filters evaluated inside Qdrant.
Distance is the dot product of unit vectors, the same scores FAISS gives.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from rag.errors import IndexMismatch
from rag.index.vectors.base import Payload, VectorSpec

log = logging.getLogger(__name__)

MARKER = "qdrant.json"
POINTS = "qdrant_points.npz"
BATCH = 512
DEFAULT_COLLECTION = "rag"

# qdrant-client's local mode locks its folder: every opening of one folder in this process shares a client.
_local: dict[Path, QdrantClient] = {}
_local_lock = threading.Lock()


def point_id(chunk_id: str) -> int:
    """The Qdrant point id of a 16-hex-digit chunk id."""
    if len(chunk_id) != 16:
        raise ValueError(f"chunk id must be 16 hex digits; got {chunk_id!r}")
    return int(chunk_id, 16)


def chunk_id(point: object) -> str:
    """The chunk id of a Qdrant point id (inverse of ``point_id``)."""
    return f"{int(str(point)):016x}"


def _docs(doc_ids: Sequence[str]) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(doc_ids)))])


class QdrantVectors:
    """A ``VectorIndex`` over one Qdrant collection."""

    name = "qdrant"

    def __init__(self, client: QdrantClient, collection: str, dim: int, where: str) -> None:
        self.client, self.collection, self.dim, self.where = client, collection, dim, where

    # --- writes ------------------------------------------------------------------------------------
    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Payload]) -> None:
        if not (len(ids) == len(vectors) == len(payloads)):
            raise ValueError(f"upsert needs as many vectors and payloads as ids: {len(ids)}, {len(vectors)}, "
                             f"{len(payloads)}")
        rows = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        for start in range(0, len(ids), BATCH):
            points = [models.PointStruct(id=point_id(i), vector=v.tolist(), payload={"doc_id": str(p["doc_id"])})
                      for i, v, p in zip(ids[start:start + BATCH], rows[start:start + BATCH],
                                         payloads[start:start + BATCH], strict=True)]
            self.client.upsert(self.collection, points=points, wait=True)

    def delete(self, ids: Sequence[str] | None = None, doc_ids: Sequence[str] | None = None) -> None:
        if ids:
            self.client.delete(self.collection, wait=True,
                               points_selector=models.PointIdsList(points=[point_id(i) for i in ids]))
        if doc_ids:
            self.client.delete(self.collection, wait=True, points_selector=models.FilterSelector(filter=_docs(doc_ids)))

    # --- reads -------------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int, doc_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        if k <= 0 or (doc_ids is not None and not doc_ids):
            return []
        found = self.client.query_points(self.collection, query=np.asarray(vector, np.float32).ravel().tolist(),
                                         limit=k, query_filter=None if doc_ids is None else _docs(doc_ids),
                                         with_payload=False, with_vectors=False)
        return [(chunk_id(p.id), float(p.score)) for p in found.points]

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def points(self) -> Iterator[tuple[str, np.ndarray, str]]:
        """Every point: ``(chunk_id, vector, doc_id)``."""
        offset = None
        while True:
            batch, offset = self.client.scroll(self.collection, limit=BATCH, offset=offset, with_payload=True,
                                               with_vectors=True)
            for p in batch:
                yield chunk_id(p.id), np.asarray(p.vector, np.float32), str((p.payload or {})["doc_id"])
            if offset is None:
                return

    # --- persistence -------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Qdrant stores every write itself; the snapshot records which collection holds the points (and,
        in memory, the points)."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.where == ":memory:":
            rows = list(self.points())
            vectors = np.stack([v for _, v, _ in rows]) if rows else np.zeros((0, self.dim), np.float32)
            np.savez(folder / POINTS, vectors=vectors,
                     meta=np.array(json.dumps({"ids": [r[0] for r in rows], "docs": [r[2] for r in rows]})))
        state = {"collection": self.collection, "dim": self.dim, "where": self.where, "count": self.count()}
        (folder / MARKER).write_text(json.dumps(state), "utf-8")


def _client(options: Mapping[str, Any]) -> tuple[QdrantClient, str]:
    """A client for the options, and where its points live (the URL, the folder or ``:memory:``)."""
    if options.get("url"):
        return QdrantClient(url=str(options["url"]), api_key=options.get("api_key") or None,
                            timeout=int(options.get("timeout", 30))), str(options["url"])
    if options.get("path"):
        path = Path(options["path"]).resolve()
        with _local_lock:
            if path not in _local:
                path.mkdir(parents=True, exist_ok=True)
                _local[path] = QdrantClient(path=str(path))
                atexit.register(_local[path].close)  # before interpreter teardown, which its __del__ trips on
            return _local[path], str(path)
    return QdrantClient(location=":memory:"), ":memory:"


def _create(client: QdrantClient, collection: str, dim: int, where: str) -> QdrantVectors:
    """A new empty collection (replacing one of that name)."""
    if client.collection_exists(collection):
        client.delete_collection(collection)
    client.create_collection(collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.DOT))
    if where.startswith("http"):  # local mode has no payload indexes (it scans)
        client.create_payload_index(collection, "doc_id", field_schema=models.PayloadSchemaType.KEYWORD)
    return QdrantVectors(client, collection, dim, where)


def open_qdrant(spec: VectorSpec, folder: Path | None) -> QdrantVectors:
    """Reopen the collection a snapshot in ``folder`` names, or create an empty one."""
    options = dict(spec.options or {})
    client, where = _client(options)
    collection = str(options.get("collection") or DEFAULT_COLLECTION)
    if folder is None or not (folder / MARKER).exists():
        return _create(client, collection, spec.dim, where)
    marker = folder / MARKER
    state = json.loads(marker.read_text("utf-8"))
    if int(state["dim"]) != spec.dim:
        raise IndexMismatch(f"{folder} holds Qdrant vectors of dim {state['dim']}, not {spec.dim}")
    if where == ":memory:":
        vectors = _create(client, collection, spec.dim, where)
        data = np.load(folder / POINTS)
        meta = json.loads(str(data["meta"]))
        vectors.upsert(meta["ids"], data["vectors"], [{"doc_id": d} for d in meta["docs"]])
        return vectors
    if not client.collection_exists(collection):
        raise IndexMismatch(f"the Qdrant collection {collection!r} at {where} is gone (the index expects "
                            f"{state['count']} points there); re-ingest with `rag ingest --rebuild`")
    return QdrantVectors(client, collection, spec.dim, where)
