"""Evidence: does any retrieved document hold what the question asks about?

A 1.5B model both over-refuses and answers unanswerable questions with a figure from a neighbouring
passage, so refusal does not rest on the prompt alone. The question is segmented into content words
(jieba); each word weighs by its rarity in the index; a document covers the question when it contains
most of that weight. A question about one county's figure asked with another county's name, or about
a year or item the corpus never mentions, leaves rare words uncovered.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import jieba
import jieba.posseg as pseg

from rag.index import Index
from rag.types import Hit

jieba.setLogLevel(logging.WARNING)

# Words that shape a question (ask, count, point at the source) but say nothing about where its answer is.
_STOPWORD_LINES = (
    "什么 多少 哪些 哪个 哪项 哪里 哪儿 哪天 哪年 哪几个 哪几 几个 几所 几名 几项 几月 几位 第几 是否 如何 怎样",
    "怎么 为什么 谁 请问 分别 一共 共有 包括 包含 其中 还有 以及 除了 有关 关于 提到 提出 指出 文章",
    "报道 讲话 该县 该市 该区 当地 是什么 叫什么 多大 多久 多长 怎么样 名字 第几名 列出 列举 文中 点名",
    "具体 主要 方面",
)
STOPWORDS = frozenset(" ".join(_STOPWORD_LINES).split())
# 这个 / 这次 / 该项 / 那条: a demonstrative points at something named elsewhere; it names nothing itself.
_DEMONSTRATIVE = re.compile(r"^[这那该此本][个项些次条种类位所件届场篇]$")
_HAS_CONTENT = re.compile(r"[\u3400-\u9fffA-Za-z0-9]")
_NUMBER = re.compile(r"^\d+(\.\d+)?$")
# "哪三种", "几个", "两所", "第几名": counters that ask how many, not what.
_COUNTER = re.compile(r"^(?:哪|几|第几|多少)|^[一二三四五六七八九十两]+[个种所项家名位条类大点]$")
_FUNCTION_CHARS = "是的了在和与及对把被从向"
# 什么活动 / 哪个部门 / 哪两所高校: the noun after "what"/"which" names the kind of answer, which the text
# need not spell out (教育督导室 is a 部门 without saying so); it is not looked for.
_WHICH = re.compile(r"^(?:什么|哪(?!些|几))")
_YEAR = re.compile(r"^(?:19|20)\d\d$")
# Missing a place or a year the question names means the document is about something else.
MUST_PENALTY = 0.5


@dataclass(frozen=True)
class Evidence:
    """The best document's share of the question's weight, the best passage similarity, what is missing."""

    coverage: float
    best_dense: float
    doc_id: str = ""
    missing: tuple[str, ...] = ()
    by_doc: tuple[tuple[str, float], ...] = ()
    musts: tuple[str, ...] = ()

    def covering(self, threshold: float) -> set[str]:
        """Documents that cover the question at least to ``threshold``."""
        return {doc for doc, score in self.by_doc if score >= threshold}


def content_words(question_simplified: str) -> list[tuple[str, bool]]:
    """Content words of a question, each with whether it is a must (a place name or a year)."""
    words: dict[str, bool] = {}
    after_which = False
    for raw, flag in pseg.lcut(question_simplified):
        w = raw.strip().strip(_FUNCTION_CHARS)  # jieba sometimes glues 是/的 to a word: 是五育
        kind_word = after_which and not raw.startswith(tuple(_FUNCTION_CHARS))
        after_which = bool(_WHICH.match(w)) or (after_which and bool(_COUNTER.match(w)))
        if kind_word and not after_which and flag.startswith("n"):
            continue
        if w in STOPWORDS or _COUNTER.match(w) or _DEMONSTRATIVE.match(w) or not _HAS_CONTENT.search(w):
            continue
        if len(w) >= 2 or _NUMBER.match(w):
            words[w] = words.get(w, False) or flag == "ns" or bool(_YEAR.match(w))
    return list(words.items())


def held(weights: dict[str, float], text: str) -> tuple[float, tuple[str, ...]]:
    """The share of the words' total weight that ``text`` contains, and the words it misses: the one notion
    of coverage, for a document (``EvidenceJudge``) and for the sentences an answer is cited from."""
    missing = tuple(w for w in weights if w not in text)
    total = sum(weights.values())
    return (1.0 - sum(weights[w] for w in missing) / total if total else 0.0), missing


class EvidenceJudge:
    """Measures, for an index, how well retrieved documents cover a question."""

    def __init__(self, index: Index) -> None:
        self._index = index

    def weight(self, word: str) -> float:
        """Rarity of a word across chunks (the lexical index's document frequencies); a word no chunk
        contains weighs most."""
        return self._index.word_weight(word)

    def assess(self, hits: Sequence[Hit], words: Sequence[tuple[str, bool]]) -> Evidence:
        """How well the hits' documents cover the question's content ``words`` (``Question.words``: each with
        whether it is a must)."""
        if not hits:
            return Evidence(0.0, -1.0)
        best_dense = max(h.dense for h in hits)
        if not words:  # "是什么？": nothing to look for, so nothing can be found
            return Evidence(0.0, best_dense)
        weights = {w: self.weight(w) for w, _ in words}
        must = {w for w, m in words if m}
        best = Evidence(-1.0, best_dense)
        scores: list[tuple[str, float]] = []
        for doc_id in dict.fromkeys(h.chunk.doc_id for h in hits):
            share, missing = held(weights, self._index.document_text(doc_id))  # clean, Simplified: from ingest
            score = share - MUST_PENALTY * len(must.intersection(missing))
            scores.append((doc_id, score))
            if score > best.coverage:
                best = Evidence(score, best_dense, doc_id, missing)
        return replace(best, by_doc=tuple(scores), musts=tuple(sorted(must)))
