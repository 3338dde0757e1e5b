"""Question: one request's question, analysed once (script, Simplified form, content words, places and
years, query vector) and passed down to retrieval, evidence, prompt and citation, which read it and never
convert, segment or embed the question again."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cached_property

import jieba
import jieba.posseg as pseg
import numpy as np

from rag.embed import Embedder
from rag.errors import InvalidRequest
from rag.normalize import is_traditional, to_simplified

jieba.setLogLevel(logging.WARNING)

# Words that shape a question (ask, count, point at the source) but say nothing about where its answer is.
_STOPWORD_LINES = (
    "什么 多少 哪些 哪个 哪项 哪里 哪儿 哪天 哪年 哪几个 哪几 几个 几所 几名 几项 几月 几位 第几 是否 如何 怎样",
    "怎么 为什么 谁 请问 分别 一共 共有 包括 包含 其中 还有 以及 除了 有关 关于 提到 提出 指出 文章",
    "报道 讲话 该县 该市 该区 当地 是什么 叫什么 多大 多久 多长 怎么样 名字 第几名 列出 列举",
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


@dataclass(frozen=True, eq=False)
class Question:
    """``original`` is what the user asked; ``query`` what retrieval looks for (a follow-up carries the
    earlier question); ``simplified`` is ``query`` in Simplified script; ``traditional`` says the user wrote
    in Traditional (the answer follows); ``vector`` is the embedded ``simplified`` (``query: ``)."""

    original: str
    query: str
    simplified: str
    traditional: bool
    vector: np.ndarray

    @cached_property
    def words(self) -> tuple[tuple[str, bool], ...]:
        """Content words of ``simplified``, each with whether it is a must (a place name or a year).
        Segmented once, on first use (a plain search never needs them)."""
        return tuple(content_words(self.simplified))

    @property
    def musts(self) -> tuple[str, ...]:
        """The places and years the question names, sorted."""
        return tuple(sorted(w for w, must in self.words if must))

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


def analyse(original: str, embedder: Embedder, query: str | None = None) -> Question:
    """Analyse a question once: script, Simplified form, content words, places and years, vector."""
    query = original if query is None else query
    if not query.strip():
        raise InvalidRequest("query must not be empty")
    simplified = to_simplified(query)
    return Question(original=original, query=query, simplified=simplified, traditional=is_traditional(original),
                    vector=embedder.embed_query(simplified))
