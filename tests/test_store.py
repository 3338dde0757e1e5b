"""Tests for rag.store: lexical tokens, BM25, dense stores, and the on-disk index (atomic generations)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rag.chunk import chunk_document
from rag.config import Settings
from rag.embed import FakeEmbedder, passage_text
from rag.errors import IndexMismatch, NotReady
from rag.ingest import ingest_paths
from rag.normalize import clean_document
from rag.store import Bm25, DocRecord, FaissStore, Index, NumpyStore, current_generation, lexical_tokens
from rag.types import Document

DOCS = {
    "a.txt": "阳山县教育工作\n一、基本情况\n阳山县在清远市八个县(市、区)中排名第三,获优秀等次。\n"
             "二、下一步工作\n要聚焦内涵发展,在提升办学质量和水平上持续发力。",
    "b.txt": "山丹县教育工作\n山丹县立足县情实际,持续深化教育改革,全面推进教育提速增质。",
}


def make_index(docs: dict[str, str], faiss_kind: str = "flat") -> Index:
    """An index of ``docs`` embedded with the fake embedder."""
    embedder = FakeEmbedder()
    chunks, records, sources = [], {}, {}
    for doc_id, text in docs.items():
        clean = clean_document(Document(doc_id, text, hashlib.sha256(text.encode()).hexdigest()))
        doc_chunks = chunk_document(clean)
        chunks.extend(doc_chunks)
        records[doc_id] = DocRecord(doc_id, clean.title, len(text), len(doc_chunks),
                                    hashlib.sha256(text.encode()).hexdigest(), "2024-01-01T00:00:00+00:00")
        sources[doc_id] = text
    vectors = embedder.embed_documents([passage_text(c) for c in chunks])
    manifest = {"embedder": {"name": embedder.name, "dim": embedder.dim}}
    return Index.build(chunks, vectors, records, sources, manifest, faiss_kind)


def assert_same_index(a: Index, b: Index) -> None:
    assert a.chunks == b.chunks
    assert np.array_equal(a.vectors, b.vectors)
    assert a.documents == b.documents
    assert a.sources == b.sources
    assert a.manifest == b.manifest
    assert a.rows_by_doc == b.rows_by_doc
    assert a.lexical.vocab == b.lexical.vocab
    assert np.array_equal(a.lexical.weights.toarray(), b.lexical.weights.toarray())
    query = FakeEmbedder().embed_query("阳山县排名")
    scores_a, rows_a = a.dense.search(query, 3)
    scores_b, rows_b = b.dense.search(query, 3)
    assert rows_a.tolist() == rows_b.tolist()
    assert np.allclose(scores_a, scores_b)


# --- lexical --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "tokens"), [
    ("阳山县2021年排名第3.5 AI技术，学", ["阳山", "山县", "2021", "年排", "排名", "名第", "3.5", "ai", "技术", "学"]),
    ("陽山 GDP增长12.5%", ["陽山", "gdp", "增长", "12.5"]),
    ("县", ["县"]),
    ("，。！ \n", []),
    ("", []),
])
def test_lexical_tokens(text: str, tokens: list[str]) -> None:
    assert lexical_tokens(text) == tokens


def test_bm25_ranks_the_matching_row_first() -> None:
    bm25 = Bm25.build(["阳山县在清远市排名第三", "山丹县教育发展", "东莞教育高质量发展", "阳山县教育"])
    scores = bm25.scores("阳山县排名")
    assert np.argsort(-scores, kind="stable").tolist()[:2] == [0, 3]
    assert scores[1] == scores[2] == 0.0
    assert int(np.argmax(bm25.scores("教育发展"))) == 1
    assert bm25.scores("完全无关xyz").tolist() == [0.0, 0.0, 0.0, 0.0]
    assert bm25.weights.shape == (4, len(bm25.vocab))


def test_bm25_save_load_round_trip(tmp_path: Path) -> None:
    bm25 = Bm25.build(["阳山县排名第三", "山丹县教育"])
    bm25.save(tmp_path)
    loaded = Bm25.load(tmp_path)
    assert loaded.vocab == bm25.vocab
    assert np.array_equal(loaded.scores("阳山县"), bm25.scores("阳山县"))


def test_bm25_of_nothing() -> None:
    assert Bm25.build([]).scores("阳山县").shape == (0,)


# --- dense ----------------------------------------------------------------------------------------------------
def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_faiss_flat_and_hnsw_agree_on_top1() -> None:
    data, queries = unit_rows(300, 32, 0), unit_rows(20, 32, 1)
    flat, hnsw = FaissStore(32, "flat"), FaissStore(32, "hnsw")
    flat.add(data)
    hnsw.add(data)
    for q in queries:
        assert int(flat.search(q, 1)[1][0]) == int(hnsw.search(q, 1)[1][0])
    # a stored vector finds itself
    assert [int(hnsw.search(data[i], 1)[1][0]) for i in (0, 17, 299)] == [0, 17, 299]


def test_numpy_store_agrees_with_faiss() -> None:
    data, queries = unit_rows(100, 16, 2), unit_rows(10, 16, 3)
    flat, fake = FaissStore(16, "flat"), NumpyStore(16)
    flat.add(data)
    fake.add(data)
    for q in queries:
        flat_scores, flat_rows = flat.search(q, 5)
        fake_scores, fake_rows = fake.search(q, 5)
        assert flat_rows.tolist() == fake_rows.tolist()
        assert np.allclose(flat_scores, fake_scores, atol=1e-5)
        assert np.all(np.diff(flat_scores) <= 0)


def test_faiss_search_caps_k_and_handles_empty() -> None:
    store = FaissStore(8, "flat")
    scores, rows = store.search(unit_rows(1, 8, 4)[0], 5)
    assert (scores.size, rows.size) == (0, 0)
    store.add(unit_rows(3, 8, 5))
    assert sorted(store.search(unit_rows(1, 8, 6)[0], 10)[1].tolist()) == [0, 1, 2]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_faiss_save_load(tmp_path: Path, kind: str) -> None:
    data = unit_rows(50, 8, 7)
    store = FaissStore(8, kind)
    store.add(data)
    store.save(tmp_path / "v.faiss")
    loaded = FaissStore.load(tmp_path / "v.faiss", kind)
    assert loaded.index.ntotal == 50
    assert loaded.search(data[9], 3)[1].tolist() == store.search(data[9], 3)[1].tolist()


# --- the index on disk ------------------------------------------------------------------------------------------
def test_build_records_counts_and_document_hashes() -> None:
    index = make_index(DOCS)
    assert index.manifest["counts"] == {"documents": 2, "chunks": len(index.chunks)}
    assert index.manifest["documents"] == {d: hashlib.sha256(t.encode()).hexdigest() for d, t in DOCS.items()}
    assert (index.manifest["format"], index.manifest["faiss"]) == (1, "flat")
    assert index.vectors.shape == (len(index.chunks), 64)
    assert index.rows_by_doc == {"a.txt": [0], "b.txt": [1]}


def test_save_load_round_trip(tmp_path: Path) -> None:
    index = make_index(DOCS)
    gen = index.save(tmp_path / "idx")
    loaded = Index.load(tmp_path / "idx")
    assert_same_index(index, loaded)
    assert loaded.manifest["counts"] == {"documents": 2, "chunks": 2}
    assert sorted(p.name for p in gen.iterdir()) == [
        "bm25.npz", "bm25_vocab.json", "chunks.jsonl", "documents.jsonl", "manifest.json", "vectors.faiss",
        "vectors.npy"]


def test_save_load_round_trip_hnsw(tmp_path: Path) -> None:
    index = make_index(DOCS, "hnsw")
    index.save(tmp_path)
    loaded = Index.load(tmp_path)
    assert loaded.manifest["faiss"] == "hnsw"
    assert_same_index(index, loaded)


def test_save_writes_a_new_generation_and_removes_older_ones(tmp_path: Path) -> None:
    (tmp_path / "gen-old-leftover").mkdir()
    (tmp_path / ".tmp-gen-interrupted").mkdir()
    (tmp_path / "keep-me").mkdir()
    first = make_index(DOCS).save(tmp_path)
    assert (tmp_path / "CURRENT").read_text("utf-8") == first.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT", first.name, "keep-me"]
    second_index = make_index({"c.txt": "东莞教育高质量发展重点工作。"})
    second = second_index.save(tmp_path)
    assert second != first and second.name.startswith("gen-")
    assert (tmp_path / "CURRENT").read_text("utf-8") == second.name
    assert current_generation(tmp_path) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT", second.name, "keep-me"]
    assert_same_index(second_index, Index.load(tmp_path))


def test_load_without_an_index_is_not_ready(tmp_path: Path) -> None:
    with pytest.raises(NotReady, match="no index at .*; build one with `rag ingest`"):
        Index.load(tmp_path)


def test_failure_in_the_middle_of_save_keeps_the_previous_index(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    old = make_index(DOCS)
    old_gen = old.save(tmp_path)
    new = make_index({"c.txt": "东莞教育高质量发展重点工作。"})

    def write_then_fail(self: Index, folder: Path) -> None:
        self.dense.save(folder / "vectors.faiss")
        raise OSError("No space left on device")

    monkeypatch.setattr(Index, "_write", write_then_fail)
    with pytest.raises(OSError, match="No space left on device"):
        new.save(tmp_path)
    monkeypatch.undo()

    assert (tmp_path / "CURRENT").read_text("utf-8") == old_gen.name
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and (tmp_path / leftovers[0] / "vectors.faiss").is_file()
    assert_same_index(old, Index.load(tmp_path))
    # the next successful save clears the interrupted one
    gen = new.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT", gen.name]


def test_failure_before_the_pointer_swap_keeps_the_previous_index(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    old = make_index(DOCS)
    old_gen = old.save(tmp_path)

    def fail(src: object, dst: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr("rag.store.os.replace", fail)
    with pytest.raises(OSError, match="power cut"):
        make_index({"c.txt": "东莞教育高质量发展重点工作。"}).save(tmp_path)
    monkeypatch.undo()
    assert current_generation(tmp_path) == old_gen
    assert_same_index(old, Index.load(tmp_path))


# A child process that re-ingests `corpus` on top of the index at `root` and saves it, pausing (and
# writing a marker) either while embedding or after the first index file of the new generation is written.
_KILLED_INGEST = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import rag.store as store
    from rag.config import Settings
    from rag.embed import FakeEmbedder
    from rag.ingest import ingest_paths
    from rag.store import Index

    root, corpus, marker, phase = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]

    def pause(where):
        marker.write_text(where)
        time.sleep(60)

    class SlowEmbedder(FakeEmbedder):
        def embed_documents(self, texts):
            if phase == "embed":
                pause("embedding")
            return super().embed_documents(texts)

    if phase == "write":
        write_jsonl = store._write_jsonl
        def slow_write_jsonl(path, rows):
            write_jsonl(path, rows)
            pause(str(path))
        store._write_jsonl = slow_write_jsonl

    settings = Settings(embed_backend="fake", llm_backend="fake", index_dir=root.parent, corpus_dir=corpus)
    index, _ = ingest_paths([corpus], settings, SlowEmbedder(), Index.load(root))
    index.save(root)
""")


@pytest.mark.parametrize("phase", ["embed", "write"])
def test_sigkill_during_ingestion_keeps_the_previous_index(tmp_path: Path, phase: str,
                                                          fake_settings: Settings) -> None:
    corpus, root, marker = tmp_path / "corpus", fake_settings.index_path, tmp_path / "marker"
    corpus.mkdir()
    for doc_id, text in DOCS.items():
        (corpus / doc_id).write_text(text, "utf-8")
    old, _ = ingest_paths([corpus], fake_settings, FakeEmbedder(), None)
    old_gen = old.save(root)
    (corpus / "a.txt").write_text(DOCS["a.txt"] + "\n三、新增内容\n新增一段需要重新嵌入的文字。", "utf-8")

    child = subprocess.Popen([sys.executable, "-c", _KILLED_INGEST, str(root), str(corpus), str(marker), phase],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), child.stderr.read().decode() if child.poll() is not None else "timeout"
    finally:
        child.kill()  # SIGKILL
        child.wait()
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -9

    tmp_gens = [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    if phase == "write":
        assert len(tmp_gens) == 1 and marker.read_text() == str(tmp_gens[0] / "chunks.jsonl")
    else:
        assert marker.read_text() == "embedding" and tmp_gens == []
    assert current_generation(root) == old_gen
    assert_same_index(old, Index.load(root))


# --- embedder check ---------------------------------------------------------------------------------------------
def test_check_embedder_accepts_the_same_model() -> None:
    make_index(DOCS).check_embedder("fake-64", 64)


@pytest.mark.parametrize(("name", "dim"), [("multilingual-e5-small", 64), ("fake-64", 384)])
def test_check_embedder_rejects_another_model(name: str, dim: int) -> None:
    with pytest.raises(IndexMismatch) as info:
        make_index(DOCS).check_embedder(name, dim)
    assert str(info.value) == (f"the index was built with embedder 'fake-64' (dim 64) but the current embedder is "
                               f"{name!r} (dim {dim}); re-ingest with `rag ingest --rebuild`")
