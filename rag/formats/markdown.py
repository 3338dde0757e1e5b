"""Markdown (``.md``): the decoded file is the extracted text, as for ``.txt``; ``#`` lines are headings.

The normalizer hides the ``#`` marks, table pipes at the line ends and table rules, so a heading reads
as its title and a table row as ``cell | cell``.
"""

from __future__ import annotations

import re

from rag.formats.base import Extracted, Limits
from rag.formats.text import decode

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(?=\S)", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def read_markdown(data: bytes, name: str, limits: Limits) -> Extracted:
    text = decode(data, name)
    return Extracted(text, headings=tuple(headings(text)))


def headings(text: str) -> list[tuple[int, int]]:
    """``(offset of the title's first character, level)`` for each ATX heading outside code fences."""
    found: list[tuple[int, int]] = []
    fenced, pos = False, 0
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := _HEADING.match(line)):
            found.append((pos + m.end(), len(m.group(1))))
        pos += len(line) + 1
    return found
