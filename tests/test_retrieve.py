"""Tests for rag.retrieve.search: script-independent hybrid search, filters, fusion, argument checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.errors import InvalidRequest
from rag.index import DocRecord, DocumentEntry, Index, IndexSpec
from rag.normalize import is_traditional, to_simplified
from rag.question import Question, analyse
from rag.retrieve import RetrievalConfig, search
from rag.types import Chunk, Hit
from tests.fakes import FakeEmbedder

REPO = Path(__file__).resolve().parent.parent
DOC_000, DOC_003, DOC_004 = "000_ae0e48cc884afd96.txt", "003_727ffb95bee0db86.txt", "004_c849ceb370c41d84.txt"
# The doc 000 chunk that says 陽山縣在清遠市八個縣(市、區)中排名第三.
RANKED_THIRD = "859a8451098fc106"


@pytest.fixture(scope="module")
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


# --- on the sample corpus -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_traditional_and_simplified_queries_find_the_same_chunk(index: Index, embedder: FakeEmbedder,
                                                                fusion: str) -> None:
    config = RetrievalConfig(fusion=fusion)
    traditional = search(index, analyse("陽山縣在清遠市排名第三", embedder), 5, config=config)
    simplified = search(index, analyse("阳山县在清远市排名第三", embedder), 5, config=config)
    top = traditional[0].chunk
    assert (top.chunk_id, top.doc_id, top.start, top.end) == (RANKED_THIRD, DOC_000, 451, 957)
    assert "陽山縣在清遠市八個縣(市、區)中排名第三" in top.text
    assert "阳山县在清远市八个县(市、区)中排名第三" in top.simplified
    assert [h.chunk.chunk_id for h in traditional] == [h.chunk.chunk_id for h in simplified]
    assert [h.score for h in traditional] == [h.score for h in simplified]


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_hits_are_best_first(index: Index, embedder: FakeEmbedder, fusion: str) -> None:
    hits = search(index, analyse("东莞市教育", embedder), 10, config=RetrievalConfig(fusion=fusion))
    assert len(hits) == 10
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert hits[0].chunk.doc_id == "002_9f3d902dfed96728.txt"
    assert len({h.chunk.chunk_id for h in hits}) == 10


def test_hit_scores_are_the_dense_and_lexical_scores(index: Index, embedder: FakeEmbedder) -> None:
    query = "阳山县在清远市排名第三"
    hit = search(index, analyse(query, embedder), 1)[0]
    vector = index.chunk_vectors([hit.chunk.chunk_id])[0]
    assert hit.dense == pytest.approx(float(vector @ embedder.embed_query(query)))
    assert hit.lexical == pytest.approx(float(index.lexical.score(query, [hit.chunk.chunk_id])[0]))
    assert hit.lexical > 0


def test_doc_ids_filter(index: Index, embedder: FakeEmbedder) -> None:
    hits = search(index, analyse("阳山县在清远市排名第三", embedder), 5, doc_ids=[DOC_003])
    assert len(hits) == 5 and {h.chunk.doc_id for h in hits} == {DOC_003}
    hits = search(index, analyse("阳山县在清远市排名第三", embedder), 100, doc_ids=[DOC_004, DOC_000])
    assert sorted(h.chunk.chunk_id for h in hits) == sorted(c.chunk_id for c in index.all_chunks()
                                                            if c.doc_id in (DOC_004, DOC_000))
    assert hits[0].chunk.chunk_id == RANKED_THIRD
    assert search(index, analyse("阳山县", embedder), 5, doc_ids=["no-such-doc.txt"]) == []


def test_top_k_larger_than_the_index(index: Index, embedder: FakeEmbedder) -> None:
    hits = search(index, analyse("教育", embedder), 500)
    assert len(hits) == index.chunk_count() == 84


@pytest.mark.parametrize("top_k", [0, -3])
def test_top_k_must_be_positive(index: Index, embedder: FakeEmbedder, top_k: int) -> None:
    with pytest.raises(InvalidRequest) as info:
        search(index, analyse("阳山县", embedder), top_k)
    assert str(info.value) == f"top_k must be greater than 0. Currently, top_k is {top_k}"
    assert "top_k must be greater than 0" in str(info.value)


@pytest.mark.parametrize("query", ["", "   ", "\n\u3000"])
def test_empty_query_raises(index: Index, embedder: FakeEmbedder, query: str) -> None:
    with pytest.raises(InvalidRequest, match="^query must not be empty$"):
        search(index, analyse(query, embedder), 5)


# --- fusion on a hand-made index --------------------------------------------------------------------------------
def tiny_index(root: Path) -> Index:
    """Three one-chunk documents with hand-made vectors; chunk ``c{i}`` has id ``00000000000000c{i}``."""
    texts = ["阳山县排名第三", "山丹县教育发展", "东莞教育"]
    vectors = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]], np.float32)
    index = Index.create(root, IndexSpec("hand", 3))
    for i, t in enumerate(texts):
        chunk = Chunk(f"00000000000000c{i}", f"d{i}.txt", 0, len(t), (), t, t)
        record = DocRecord(chunk.doc_id, "", len(t), 1, "", "")
        index.write([DocumentEntry(record, t, t, t, tuple(range(len(t))), (chunk,), vectors[i:i + 1], ((),))])
    return index


def names(hits: list[Hit]) -> list[str]:
    return [h.chunk.chunk_id[-2:] for h in hits]


def hand_question(text: str, vector: np.ndarray) -> Question:
    """A question with a hand-made vector."""
    return Question(text, text, to_simplified(text), is_traditional(text), vector)


def test_rrf_fusion_scores(tmp_path: Path) -> None:
    index = tiny_index(tmp_path)
    query_vector = np.array([1, 0, 0], np.float32)  # dense ranks: c0, c1, c2
    hits = search(index, hand_question("教育发展", query_vector), 3)  # lexical: c1, c2, (c0: none)
    assert names(hits) == ["c1", "c2", "c0"]
    assert [h.score for h in hits] == pytest.approx([1 / 62 + 1 / 61, 1 / 63 + 1 / 62, 1 / 61])
    assert [h.dense for h in hits] == pytest.approx([0.6, 0.0, 1.0])
    assert hits[2].lexical == 0.0


def test_weighted_fusion_scores(tmp_path: Path) -> None:
    index = tiny_index(tmp_path)
    query_vector = np.array([1, 0, 0], np.float32)
    lexical = index.lexical.score("教育发展", [f"00000000000000c{i}" for i in range(3)])
    config = RetrievalConfig(fusion="weighted", dense_weight=0.5)
    hits = search(index, hand_question("教育發展", query_vector), 3, config=config)
    expected = {f"c{i}": 0.5 * d + 0.5 * lexical[i] / lexical.max() for i, d in enumerate([1.0, 0.6, 0.0])}
    assert names(hits) == sorted(expected, key=lambda c: -expected[c])
    assert [h.score for h in hits] == pytest.approx(sorted(expected.values(), reverse=True))
    assert names(hits)[0] == "c1" and hits[0].score == pytest.approx(0.8)


def test_weighted_fusion_without_shared_terms_is_dense_only(tmp_path: Path) -> None:
    hits = search(tiny_index(tmp_path), hand_question("完全无关", np.array([0, 0, 1], np.float32)), 3,
                  config=RetrievalConfig(fusion="weighted"))
    assert names(hits)[0] == "c2"
    assert set(names(hits)[1:]) == {"c0", "c1"}  # tied at 0: order unspecified
    assert [h.score for h in hits] == pytest.approx([0.5, 0.0, 0.0])
