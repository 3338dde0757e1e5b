"""Tests for rag.index.lexical: tokens, BM25, incremental updates equal to a fresh build, rarity, snapshots."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rag.index.lexical import LexicalIndex, lexical_tokens

TEXTS = ["阳山县在清远市排名第三", "山丹县教育发展", "东莞教育高质量发展", "阳山县教育"]
IDS = [f"{i:016x}" for i in range(len(TEXTS))]


def built(texts: list[str] = TEXTS, ids: list[str] = IDS) -> LexicalIndex:
    index = LexicalIndex()
    index.add(ids, texts)
    return index


def reference_bm25(texts: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Okapi BM25 written out by hand (each distinct query term once)."""
    docs = [lexical_tokens(t) for t in texts]
    avgdl = max(sum(map(len, docs)) / len(docs), 1.0)
    scores = []
    for tokens in docs:
        score = 0.0
        for term in dict.fromkeys(lexical_tokens(query)):
            df = sum(term in d for d in docs)
            tf = tokens.count(term)
            if tf:
                idf = math.log1p((len(docs) - df + 0.5) / (df + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(tokens) / avgdl))
        scores.append(score)
    return scores


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
    index = built()
    found = index.search("阳山县排名", 10)[0]
    assert [i for i, _ in found] == [IDS[0], IDS[3]]
    assert [i for i, _ in index.search("教育发展", 1)[0]] == [IDS[1]]
    assert index.search("完全无关xyz", 10)[0] == []
    scores = index.score("阳山县排名", IDS + ["ffffffffffffffff"]).tolist()
    assert scores[0] > scores[3] > 0 and scores[1] == scores[2] == scores[4] == 0.0


@pytest.mark.parametrize("query", ["阳山县排名", "教育发展", "东莞市教育高质量"])
def test_scores_are_okapi_bm25(query: str) -> None:
    assert built().score(query, IDS) == pytest.approx(reference_bm25(TEXTS, query), rel=1e-5)


def test_incremental_updates_equal_a_fresh_build(tmp_path: Path) -> None:
    index = built()
    index.add(["00000000000000aa"], ["阳山县教育局局长"])
    index.delete([IDS[1], IDS[2]], [TEXTS[1], TEXTS[2]])
    index.delete(["00000000000000bb"], ["不在索引里"])  # unknown: ignored
    texts, ids = [TEXTS[0], TEXTS[3], "阳山县教育局局长"], [IDS[0], IDS[3], "00000000000000aa"]
    fresh = built(texts, ids)
    for query in ("阳山县教育", "教育局局长", "东莞教育", "山丹"):
        assert index.score(query, ids) == pytest.approx(fresh.score(query, ids))
        assert index.search(query, 5)[0] == fresh.search(query, 5)[0]
    assert index.count() == 3 and index.df("教育") == fresh.df("教育") == 2 and index.df("东莞") == 0
    index.save(tmp_path)
    reopened = LexicalIndex.open(tmp_path)
    assert reopened.count() == 3 and reopened.df("东莞") == 0
    for query in ("阳山县教育", "教育局局长"):
        assert reopened.search(query, 5)[0] == index.search(query, 5)[0]
    reopened.add(["00000000000000cc"], ["东莞教育"])  # the memory-mapped base is never written
    assert reopened.df("东莞") == 1 and LexicalIndex.open(tmp_path).df("东莞") == 0


def test_adding_a_present_chunk_is_refused() -> None:
    with pytest.raises(ValueError, match="already in the lexical index"):
        built().add([IDS[0]], ["阳山县"])


def test_rarity_is_one_notion() -> None:
    index = built()
    n = index.count()
    assert index.idf("教育") == pytest.approx(math.log1p((n - 3 + 0.5) / (3 + 0.5)))
    assert index.idf("没有") == pytest.approx(math.log1p((n + 0.5) / 0.5))
    assert index.doc_freq("阳山县") == 2 and index.doc_freq("高质量发展") == 1 and index.doc_freq("火星") == 0
    assert index.weight("阳山县") == pytest.approx(math.log1p(4 / 3))
    assert index.weight("火星") == pytest.approx(math.log1p(4))


def test_doc_filter_inside_the_index() -> None:
    found, _ = built().search("阳山县教育", 10, within=[IDS[3], IDS[1]])
    assert [i for i, _ in found] == [IDS[3], IDS[1]]


def test_empty_index(tmp_path: Path) -> None:
    index = LexicalIndex.open(tmp_path / "none")
    assert index.search("阳山县", 5)[0] == [] and index.score("阳山县", ["0000000000000001"]).tolist() == [0.0]
    assert index.count() == 0 and index.weight("阳山") == 0.0


def test_a_common_terms_contribution_is_kept_until_the_next_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """A term in many chunks costs one vector add from its second search on, with exactly the same scores;
    an add or a delete (which change n, df and the lengths) drops what was kept."""
    texts = [f"第{i}号报告{'教育' if i % 2 else '发展'}部分" for i in range(40)]
    ids = [f"{i:016x}" for i in range(40)]
    index = built(texts, ids)
    query = "报告的教育部分"
    first = index.score(query, ids)
    read: list[int] = []
    postings = LexicalIndex._postings
    monkeypatch.setattr(LexicalIndex, "_postings", lambda self, tid: read.append(tid) or postings(self, tid))
    again = index.score(query, ids)
    assert again.tobytes() == first.tobytes()  # bit for bit, not approximately
    assert read == []  # every term of the query is in 1/16 of the chunks or more: nothing read again
    index.delete(ids[:2], texts[:2])
    index.add(["00000000000000aa"], ["教育报告"])
    fresh = built(texts[2:] + ["教育报告"], ids[2:] + ["00000000000000aa"])
    assert index.score(query, ids[2:] + ["00000000000000aa"]).tobytes() == \
        fresh.score(query, ids[2:] + ["00000000000000aa"]).tobytes()
    assert read != []
    assert index.search(query, 5)[0] == fresh.search(query, 5)[0]
