"""Qdrant as the vector backend of a whole index, in qdrant-client's local mode (no network): the same hits
as FAISS on the sample corpus, the manifest names it, document deletes and reopening keep it consistent.
The vector contract itself (ids, doc filter, delete, save/open) runs for Qdrant in ``test_vectors.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import IndexMismatch
from rag.index import Index
from rag.index.vectors.qdrant import QdrantVectors, chunk_id, point_id
from rag.ingest import ingest_paths, open_index
from rag.question import analyse
from rag.retrieve import search
from tests.fakes import FakeEmbedder

REPO = Path(__file__).resolve().parents[2]
DOC_000 = "000_ae0e48cc884afd96.txt"
QUERIES = ["阳山县在清远市八个县中排名第几", "東莞全年新增公辦園學位多少個", "辽源市教育局局长是谁", "学前教育毛入园率",
           "义务教育阶段教师", "火星基地的预算"]


def settings_for(tmp_path: Path, backend: str) -> Settings:
    return Settings(vector_backend=backend, corpus_dir=REPO / "corpus",
                    index_dir=tmp_path / backend, models_dir=tmp_path / "models")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Index]:
    root = tmp_path_factory.mktemp("qdrant")
    return {b: ingest_paths([REPO / "corpus"], settings_for(root, b), FakeEmbedder(), None)[0]
            for b in ("faiss", "qdrant")}


def test_point_ids_are_chunk_ids_both_ways() -> None:
    for cid in ["0000000000000000", "ffffffffffffffff", "859a8451098fc106"]:
        assert chunk_id(point_id(cid)) == cid
    with pytest.raises(ValueError, match="16 hex digits"):
        point_id("abc")


def test_same_hits_as_faiss_on_the_sample_corpus(built: dict[str, Index]) -> None:
    embedder = FakeEmbedder()
    assert isinstance(built["qdrant"].vectors, QdrantVectors)
    assert built["qdrant"].vectors.count() == built["faiss"].vectors.count() > 50
    for query in QUERIES:
        question = analyse(query, embedder)
        faiss_hits, qdrant_hits = (search(built[b], question, 10) for b in ("faiss", "qdrant"))
        assert [h.chunk.chunk_id for h in qdrant_hits] == [h.chunk.chunk_id for h in faiss_hits], query
        assert [h.dense for h in qdrant_hits] == pytest.approx([h.dense for h in faiss_hits], abs=1e-5)
        only = search(built["qdrant"], question, 10, doc_ids=[DOC_000])
        assert only and {h.chunk.doc_id for h in only} == {DOC_000}


def test_manifest_records_qdrant_and_faiss_settings_do_not_open_it(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "qdrant")
    index, _ = ingest_paths([REPO / "corpus"], settings, FakeEmbedder(), None)
    assert index.manifest["parts"]["vectors"] == "qdrant"
    assert (settings.index_path / "qdrant").is_dir()
    index.close()
    with pytest.raises(IndexMismatch, match="'qdrant' vector backend but the settings select 'faiss-flat'"):
        open_index(settings.model_copy(update={"vector_backend": "faiss"}))


def test_delete_a_document_then_reopen(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "qdrant")
    index, _ = ingest_paths([REPO / "corpus"], settings, FakeEmbedder(), None)
    before = index.vectors.count()
    doc_chunks = len(index.chunks_of(DOC_000))
    index.write(remove=[DOC_000])
    question = analyse("阳山县在清远市八个县中排名第几", FakeEmbedder())
    assert index.vectors.count() == before - doc_chunks
    assert all(h.chunk.doc_id != DOC_000 for h in search(index, question, 20))
    assert index.dense_search(question.vector, 5, doc_ids=[DOC_000]) == []
    index.close()
    reopened = open_index(settings)  # the snapshot plus the delete replayed; the points are Qdrant's own
    assert reopened.vectors.count() == before - doc_chunks
    assert all(h.chunk.doc_id != DOC_000 for h in search(reopened, question, 20))


def test_a_missing_collection_is_named(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "qdrant")
    index, _ = ingest_paths([REPO / "corpus"], settings, FakeEmbedder(), None)
    assert isinstance(index.vectors, QdrantVectors)
    index.snapshot(force=True)  # without a snapshot, opening rebuilds the collection from the corpus store
    index.vectors.client.delete_collection("rag-default")
    index.close()
    with pytest.raises(IndexMismatch, match="collection 'rag-default' .* is gone"):
        open_index(settings)
