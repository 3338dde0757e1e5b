"""The vector index seam: every backend passes the same contract (ids, doc filter, delete, save/open)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.index.keys import chunk_id_of, chunk_key
from rag.index.vectors import VectorIndex, VectorSpec, open_vectors
from rag.index.vectors.faiss import FaissVectors

BACKENDS = ["faiss-flat", "faiss-hnsw", "fake", "qdrant"]
DIM = 16


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ids(n: int, offset: int = 0) -> list[str]:
    return [f"{i + offset:016x}" for i in range(n)]


def filled(backend: str, n: int = 60) -> tuple[VectorIndex, list[str], np.ndarray]:
    """``n`` points: the first third belong to a.txt, the rest to b.txt."""
    index = open_vectors(VectorSpec(backend, DIM))
    names, data = ids(n), unit_rows(n, DIM, 0)
    index.upsert(names, data, [{"doc_id": "a.txt" if i < n // 3 else "b.txt"} for i in range(n)])
    return index, names, data


def test_keys_round_trip_every_64_bit_pattern() -> None:
    for chunk_id in ["0000000000000000", "7fffffffffffffff", "8000000000000000", "fffffffffffffffe",
                     "9f3d902dfed96728"]:
        assert chunk_id_of(chunk_key(chunk_id)) == chunk_id
    assert chunk_key("8000000000000000") == -(2 ** 63)
    with pytest.raises(ValueError, match="16 hex digits"):
        chunk_key("abc")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stored_vector_finds_itself_by_its_id(backend: str) -> None:
    index, names, data = filled(backend)
    assert isinstance(index, VectorIndex) and index.count() == 60
    for i in (0, 17, 59):
        found = index.search(data[i], 3)
        assert found[0][0] == names[i] and found[0][1] == pytest.approx(1.0, abs=1e-5)
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_doc_filter_runs_inside_the_index(backend: str) -> None:
    index, names, data = filled(backend)
    found = index.search(data[40], 100, doc_ids=["a.txt"])
    assert sorted(i for i, _ in found) == sorted(names[:20])
    assert index.search(data[40], 5, doc_ids=["b.txt"])[0][0] == names[40]
    assert index.search(data[40], 5, doc_ids=["missing.txt"]) == []
    assert index.search(data[40], 0) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_delete_by_id_and_by_document(backend: str) -> None:
    index, names, data = filled(backend)
    index.delete(ids=[names[40], "ffffffffffffff00"])
    assert index.count() == 59
    assert names[40] not in [i for i, _ in index.search(data[40], 60)]
    index.delete(doc_ids=["a.txt"])
    assert index.count() == 39
    assert sorted(i for i, _ in index.search(data[0], 100)) == sorted(names[20:40] + names[41:])
    assert index.search(data[0], 5, doc_ids=["a.txt"]) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_upsert_of_a_present_id_keeps_one_point(backend: str) -> None:
    index, names, data = filled(backend)
    index.delete(ids=[names[5]])
    index.upsert(names[:10], data[:10], [{"doc_id": "a.txt"}] * 10)
    assert index.count() == 60
    assert [i for i, _ in index.search(data[5], 60)].count(names[5]) == 1
    assert index.search(data[5], 1)[0][0] == names[5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_and_reopen(tmp_path: Path, backend: str) -> None:
    index, names, data = filled(backend)
    index.delete(ids=[names[3]])
    index.save(tmp_path)
    reopened = open_vectors(VectorSpec(backend, DIM), tmp_path)
    assert reopened.count() == 59
    for q in unit_rows(5, DIM, 1):
        assert reopened.search(q, 7) == index.search(q, 7)
    assert reopened.search(data[30], 50, doc_ids=["a.txt"]) == index.search(data[30], 50, doc_ids=["a.txt"])


def test_empty_index_returns_nothing(tmp_path: Path) -> None:
    for backend in BACKENDS:
        index = open_vectors(VectorSpec(backend, DIM), tmp_path / "none")
        assert index.count() == 0 and index.search(unit_rows(1, DIM, 2)[0], 5) == []


def test_faiss_flat_and_fake_agree_exactly() -> None:
    flat, _, _ = filled("faiss-flat", 200)
    fake, _, _ = filled("fake", 200)
    for q in unit_rows(10, DIM, 3):
        a, b = flat.search(q, 10), fake.search(q, 10)
        assert [i for i, _ in a] == [i for i, _ in b]
        assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-5)


def test_hnsw_agrees_with_flat_on_top1() -> None:
    flat, _, _ = filled("faiss-flat", 300)
    hnsw, _, _ = filled("faiss-hnsw", 300)
    for q in unit_rows(20, DIM, 4):
        assert flat.search(q, 1)[0][0] == hnsw.search(q, 1)[0][0]


def test_hnsw_compact_drops_deleted_points() -> None:
    hnsw, names, data = filled("faiss-hnsw")
    assert isinstance(hnsw, FaissVectors)
    hnsw.delete(doc_ids=["a.txt"])
    compact = hnsw.compact()
    assert compact.count() == hnsw.count() == 40 and compact._index.ntotal == 40
    assert compact.search(data[45], 3) == hnsw.search(data[45], 3)


def test_unknown_backend_is_named() -> None:
    with pytest.raises(ValueError, match="unknown vector backend 'nope'"):
        open_vectors(VectorSpec("nope", DIM))


def test_faiss_searches_with_one_openmp_thread_on_any_thread() -> None:
    """A server searches on worker threads, where OpenMP starts with one thread per core; their spin-waits on a
    busy machine made a 100k-vector search 8x slower. The thread's own setting is left as it was."""
    import threading

    import faiss

    index, names, data = filled("faiss-flat")
    seen: list[int] = []
    inner = index._index

    class Recording:
        def __getattr__(self, name: str) -> object:
            return getattr(inner, name)

        def search(self, *args: object, **kwargs: object) -> object:
            seen.append(faiss.omp_get_max_threads())
            return inner.search(*args, **kwargs)

    index._index = Recording()

    def worker() -> None:
        faiss.omp_set_num_threads(3)  # what a fresh thread of a 3-core machine starts with
        assert [i for i, _ in index.search(data[2], 1)] == [names[2]]
        seen.append(faiss.omp_get_max_threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [1, 3]


def test_faiss_builds_its_document_map_only_for_a_filter_or_a_delete(tmp_path: Path) -> None:
    """Opening 100k vectors spent 0.1 s grouping keys by document, which a plain search never reads."""
    index, names, data = filled("faiss-flat")
    index.save(tmp_path)
    loaded = FaissVectors.load(tmp_path)
    assert [i for i, _ in loaded.search(data[30], 1)] == [names[30]]
    assert loaded._by_doc is None
    assert [i for i, _ in loaded.search(data[30], 1, doc_ids=["a.txt"])][0] in names[:20]
    assert loaded._by_doc is not None and len(loaded._by_doc["a.txt"]) == 20
