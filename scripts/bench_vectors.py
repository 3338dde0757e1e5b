"""Vector backends side by side at a given size: build, search p50/p95 (whole index and one document's
points), and adding then deleting one 18-chunk document. Fake unit vectors (dim 384, as multilingual-e5-small),
20 chunks per document; the query vectors are fake too, so only the engines are timed.

    .venv/bin/python scripts/bench_vectors.py --sizes 10000 [--backends faiss-flat,qdrant-local,qdrant-memory]

``qdrant-local`` is qdrant-client's local mode persisted on disk (what RAG_VECTOR_BACKEND=qdrant uses without
RAG_QDRANT_URL); ``qdrant-memory`` its in-memory mode. A Qdrant server is not measured here (no network).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.index.vectors import VectorIndex, VectorSpec, open_vectors

DIM = 384
PER_DOC = 20


def unit_rows(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def spec(backend: str, work: Path) -> VectorSpec:
    options: dict[str, Any] = {
        "faiss-flat": {}, "faiss-hnsw": {},
        "qdrant-local": {"path": str(work / "qdrant"), "collection": "bench"},
        "qdrant-memory": {"collection": "bench"},
    }[backend]
    return VectorSpec(backend.split("-")[0] if backend.startswith("qdrant") else backend, DIM, options)


def percentiles(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1000
    return f"{np.percentile(ms, 50):.1f} / {np.percentile(ms, 95):.1f}"


def measure(backend: str, n: int, queries: int, work: Path) -> dict[str, str]:
    ids = [f"{i:016x}" for i in range(n)]
    vectors = unit_rows(n, 0)
    payloads = [{"doc_id": f"doc{i // PER_DOC:06d}.txt"} for i in range(n)]
    index: VectorIndex = open_vectors(spec(backend, work))
    started = time.perf_counter()
    index.upsert(ids, vectors, payloads)
    build = time.perf_counter() - started
    qs = unit_rows(queries, 1)
    whole, one_doc = [], []
    for i, q in enumerate(qs):
        t = time.perf_counter()
        index.search(q, 30)
        whole.append(time.perf_counter() - t)
        t = time.perf_counter()
        index.search(q, 30, doc_ids=[f"doc{(i * 7) % (n // PER_DOC):06d}.txt"])
        one_doc.append(time.perf_counter() - t)
    new_ids = [f"{n + i:016x}" for i in range(18)]
    t = time.perf_counter()
    index.upsert(new_ids, unit_rows(18, 2), [{"doc_id": "new.txt"}] * 18)
    add = time.perf_counter() - t
    t = time.perf_counter()
    index.delete(doc_ids=["new.txt"])
    delete = time.perf_counter() - t
    assert index.count() == n
    return {"backend": backend, "chunks": f"{n:,}", "build": f"{build:.2f} s", "search": percentiles(whole),
            "search one doc": percentiles(one_doc), "add 18": f"{add * 1000:.0f} ms",
            "delete doc": f"{delete * 1000:.0f} ms"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000")
    parser.add_argument("--backends", default="faiss-flat,qdrant-local,qdrant-memory")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        for backend in args.backends.split(","):
            with tempfile.TemporaryDirectory() as work:
                rows.append(measure(backend, n, args.queries, Path(work)))
                print(rows[-1], flush=True)
    head = list(rows[0])
    print("\n| " + " | ".join(head[:-4]) + " | search p50 / p95 (ms, k=30) | one document's points p50 / p95 (ms) "
          "| add 18 | delete doc |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r[h] for h in head) + " |")


if __name__ == "__main__":
    main()
