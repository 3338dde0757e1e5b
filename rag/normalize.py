"""Normalize: remove scraped pinyin annotations and page junk, tidy whitespace, keep a map back to
original offsets, and derive a Simplified form (OpenCC) aligned character for character."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import PurePosixPath

import opencc

from rag.types import CleanDocument, Document

# `領(lǐng)導(dǎo)`: a tone-marked pinyin syllable in parentheses right after a Han character.
# A PDF may lose the tone-marked vowel to a font without a Unicode mapping: `統(t ng)`.
_PINYIN = re.compile(
    r"(?<=[\u3400-\u9fff])\((?:[a-zü]*[āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜ][a-zü]*|[a-zü]{0,5} [a-zü]{0,5})\)")

# Whole lines of page furniture, matched on the Simplified, stripped line.
_JUNK_LINES = re.compile(
    r"^(?:扫码关注.{0,20}|扫一扫.{0,20}|(?:手机|移动)(?:门户|版)|相关(?:文章|阅读|推荐)[:：]?"
    r"|推荐访问[:：].*|下面是小编.{0,100}(?:参考|借鉴|阅读).{0,10}|(?:发布)?时间[:：].{0,40}来源[:：].*"
    r"|来源[:：]\s*网友投稿.*|(?:上一篇|下一篇)[:：].*|分享到.{0,20}|打印本页|关闭窗口|返回顶部)$")

# Markdown marks that are not text: a heading's `#`s, the pipes at both ends of a table row, a table rule,
# a code fence.
_MD_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(?=\S)", re.MULTILINE)
_MD_TABLE_EDGE = re.compile(r"^[ \t]*\||(?<=\S)[ \t]*\|[ \t]*$", re.MULTILINE)
_MD_TABLE_RULE = re.compile(r"^\|?(?:\s*:?-{3,}:?\s*\|)+(?:\s*:?-{3,}:?\s*)?\|?$|^(?:```|~~~)\S*$")

_TITLE_MAX = 40
_SENTENCE_END = "。！？；!?;，,：:"


@lru_cache(maxsize=4)
def converter(config: str) -> opencc.OpenCC:
    """A cached OpenCC converter (``t2s``: to Simplified, ``s2t``: to Traditional)."""
    return opencc.OpenCC(config)


def to_simplified(text: str) -> str:
    return str(converter("t2s").convert(text))


def to_traditional(text: str) -> str:
    return str(converter("s2t").convert(text))


def is_traditional(text: str) -> bool:
    """True when converting to Simplified changes the text, i.e. it is written in Traditional."""
    return to_simplified(text) != text


def simplified_aligned(text: str) -> str:
    """Simplified form with exactly one character per input character, so offsets carry over."""
    lines = []
    for line in text.split("\n"):
        converted = to_simplified(line)
        if len(converted) != len(line):  # a phrase conversion changed length: fall back per character
            converted = "".join(c if len(s := to_simplified(c)) != 1 else s for c in line)
        lines.append(converted)
    return "\n".join(lines)


def clean_with_offsets(text: str) -> tuple[str, list[int]]:
    """Clean ``text``; return the clean string and, for each of its characters, the original index."""
    removed = _removed_mask(text)
    out: list[str] = []
    offsets: list[int] = []
    pos = 0
    for line in text.split("\n"):
        kept = [(c, pos + i) for i, c in enumerate(line) if not removed[pos + i]]
        tidy = _tidy_line(kept)
        if tidy and not _is_junk("".join(c for c, _ in tidy)):
            if out:
                out.append("\n")
                offsets.append(offsets[-1] + 1)
            out.extend(c for c, _ in tidy)
            offsets.extend(i for _, i in tidy)
        pos += len(line) + 1
    return "".join(out), offsets


def clean(text: str) -> str:
    """The clean text of ``text`` (see ``clean_with_offsets``)."""
    return clean_with_offsets(text)[0]


def _removed_mask(text: str) -> list[bool]:
    mask = [False] * len(text)
    for pattern in (_PINYIN, _MD_HEADING, _MD_TABLE_EDGE):
        for match in pattern.finditer(text):
            mask[match.start():match.end()] = [True] * (match.end() - match.start())
    return mask


def _tidy_line(kept: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Strip the line and fold each run of inner whitespace into one space."""
    tidy: list[tuple[str, int]] = []
    for c, i in kept:
        if c.isspace():
            if tidy and not tidy[-1][0].isspace():
                tidy.append((" ", i))
        else:
            tidy.append((c, i))
    while tidy and tidy[-1][0] == " ":
        tidy.pop()
    return tidy


def _is_junk(line: str) -> bool:
    return bool(_JUNK_LINES.match(to_simplified(line)) or _MD_TABLE_RULE.match(line))


def clean_document(doc: Document) -> CleanDocument:
    """Clean one document, derive its Simplified form and title."""
    text, offsets = clean_with_offsets(doc.text)
    return CleanDocument(doc_id=doc.doc_id, original=doc.text, clean=text,
                         simplified=simplified_aligned(text), offsets=tuple(offsets),
                         title=document_title(text, doc.title, doc.doc_id), headings=doc.headings)


def is_title_line(line: str) -> bool:
    """A short line that does not end like a sentence: a document or section title."""
    return 0 < len(line) <= _TITLE_MAX and line[-1] not in _SENTENCE_END


def title_lines_of(clean_text: str) -> list[str]:
    """The leading title lines (up to two, repeats dropped) of a clean text."""
    titles: list[str] = []
    for line in clean_text.split("\n")[:2]:
        if not is_title_line(line):
            break
        if line not in titles:  # scraped pages often repeat the title
            titles.append(line)
    return titles


def document_title(clean_text: str, declared: str, name: str) -> str:
    """The title people know a document by, never a sentence cut short: the title its format declares
    (HTML ``<title>``/``<h1>``, Word's Title, PDF metadata or first large-font lines, an OCR'd page's first
    heading line) when it reads as a title; else the text's leading title lines (short lines that do not
    end like a sentence; they also win when the declared title is only the first of them); else the file
    name without its extension."""
    lines = title_lines_of(clean_text)
    declared = " ".join(clean(declared).split())
    if is_title_line(declared) and not (lines and lines[0] == declared):
        return declared
    if lines:
        return " ".join(lines)
    return PurePosixPath(name).stem
