"""Tests for rag.question: a question is analysed once into one value."""

from __future__ import annotations

import numpy as np
import pytest

from rag.errors import InvalidRequest
from rag.question import analyse
from tests.fakes import FakeEmbedder


class CountingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []

    def embed_query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return super().embed_query(text)


def test_a_traditional_question_is_analysed_once_in_simplified() -> None:
    embedder = CountingEmbedder()
    q = analyse("陽山縣在2021年清遠市排名第幾？", embedder)
    assert (q.original, q.query) == ("陽山縣在2021年清遠市排名第幾？",) * 2
    assert q.simplified == "阳山县在2021年清远市排名第几？"
    assert q.traditional is True
    assert embedder.queries == ["阳山县在2021年清远市排名第几？"]
    assert np.array_equal(q.vector, FakeEmbedder().embed_query(q.simplified))
    content_words = [w for w, _ in q.words]
    assert "阳山县" in content_words and "2021" in content_words and "清远市" in content_words
    assert q.musts == ("2021", "清远市", "阳山县")


def test_a_follow_up_keeps_the_user_question_and_retrieves_with_the_query() -> None:
    q = analyse("那初中呢？", FakeEmbedder(), query="东莞小学学位有多少 那初中呢？")
    assert (q.original, q.query, q.traditional) == ("那初中呢？", "东莞小学学位有多少 那初中呢？", False)
    assert q.simplified == q.query


@pytest.mark.parametrize("query", ["", "   "])
def test_an_empty_query_is_refused(query: str) -> None:
    with pytest.raises(InvalidRequest, match="^query must not be empty$"):
        analyse(query, FakeEmbedder())
