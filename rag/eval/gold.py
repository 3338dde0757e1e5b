"""The gold set: questions written from the corpus, how they are read and how answers are matched."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import opencc

from rag.errors import RagError
from rag.types import Citation


class EvalError(RagError):
    """The evaluation could not run."""

    type = "eval_error"


class GoldFormatError(EvalError):
    """The gold set is malformed."""


SPLITS = ("dev", "test")  # tune on dev; report on test, which nothing was chosen on
# fact: a name or term; quantity: a number, date or rank; list: several items, ``must`` holds every one;
# entity: who/which/where; unanswerable: the corpus lacks the answer; followup: needs the earlier turns;
# adversarial: a document tries to steer the answer.
TYPES = ("fact", "quantity", "list", "entity", "unanswerable", "followup", "adversarial")
_NO_ANSWER_TYPES = ("unanswerable", "followup", "adversarial")  # the types that may have ``doc: null``
ROLES = ("user", "assistant")


@dataclass(frozen=True)
class GoldItem:
    """One gold question. ``doc`` is a document id or its leading part; ``None`` means unanswerable.
    ``must``: groups of alternatives; a correct answer contains one string of every group. ``must_not``:
    strings no answer may contain (what an injected instruction asks for). ``history``: the earlier turns
    of a conversation, ``(role, content)`` pairs sent before the question."""

    id: str
    question: str
    doc: str | None
    must: tuple[tuple[str, ...], ...]
    split: str = "dev"
    type: str = "fact"
    history: tuple[tuple[str, str], ...] = ()
    must_not: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return self.doc is not None

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat messages sent for this question: the earlier turns, then the question."""
        return [{"role": role, "content": content} for role, content in self.history] + [
            {"role": "user", "content": self.question}]

    @property
    def search_query(self) -> str:
        """What retrieval metrics search for: the question, after the last earlier user turn if any."""
        users = [content for role, content in self.history if role == "user"]
        return f"{users[-1]} {self.question}" if users else self.question


def load_gold(path: Path | str) -> list[GoldItem]:
    """Read a gold JSONL file (blank lines skipped); raise ``GoldFormatError`` naming file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldFormatError(f"{path}: cannot read the gold set: {exc}") from exc
    items: list[GoldItem] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item = _parse_gold_line(line, f"{path}:{lineno}")
        if item.id in seen:
            raise GoldFormatError(f"{path}:{lineno}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise GoldFormatError(f"{path}: the gold set has no questions")
    return items


def _parse_gold_line(line: str, where: str) -> GoldItem:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise GoldFormatError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(raw, dict):
        raise GoldFormatError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    for key in ("id", "question"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise GoldFormatError(f"{where}: {key!r} must be a non-empty string, got {raw.get(key)!r}")
    doc = raw.get("doc")
    if doc is not None and (not isinstance(doc, str) or not doc.strip()):
        raise GoldFormatError(f"{where}: 'doc' must be a document id or null, got {doc!r}")
    split = raw.get("split", "dev")
    if split not in SPLITS:
        raise GoldFormatError(f"{where}: 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    kind = raw.get("type", "fact" if doc is not None else "unanswerable")
    if kind not in TYPES:
        raise GoldFormatError(f"{where}: 'type' must be one of {', '.join(TYPES)}, got {kind!r}")
    if doc is None and kind not in _NO_ANSWER_TYPES:
        raise GoldFormatError(f"{where}: a {kind} question needs a 'doc'; only {', '.join(_NO_ANSWER_TYPES)} "
                              "questions may have none")
    if kind == "unanswerable" and doc is not None:
        raise GoldFormatError(f"{where}: an unanswerable question has 'doc': null, got {doc!r}")
    history = _parse_history(raw.get("history", []), where)
    if kind == "followup" and not history:
        raise GoldFormatError(f"{where}: a followup question needs its earlier turns in 'history'")
    must_not = raw.get("must_not", [])
    if not isinstance(must_not, list) or not all(isinstance(s, str) and normalize(s) for s in must_not):
        raise GoldFormatError(f"{where}: 'must_not' must be a list of non-empty strings, got {must_not!r}")
    return GoldItem(id=raw["id"], question=raw["question"], doc=doc, must=_parse_must(raw.get("must", []), where),
                    split=split, type=kind, history=history, must_not=tuple(must_not))


def _parse_history(history: Any, where: str) -> tuple[tuple[str, str], ...]:
    """Earlier turns: alternating user and assistant messages, starting with the user, ending with the
    assistant (the question itself is the next user turn)."""
    message = (f"{where}: 'history' must be a list of {{\"role\": \"user\"|\"assistant\", \"content\": text}} "
               f"alternating from user to assistant, got {history!r}")
    if not isinstance(history, list) or len(history) % 2:
        raise GoldFormatError(message)
    turns = []
    for i, turn in enumerate(history):
        if not isinstance(turn, dict) or turn.get("role") != ROLES[i % 2]:
            raise GoldFormatError(message)
        if not isinstance(turn.get("content"), str) or not turn["content"].strip():
            raise GoldFormatError(message)
        turns.append((turn["role"], turn["content"]))
    return tuple(turns)


def _parse_must(must: Any, where: str) -> tuple[tuple[str, ...], ...]:
    message = f"{where}: 'must' must be a list of non-empty lists of non-empty strings, got {must!r}"
    if not isinstance(must, list):
        raise GoldFormatError(message)
    groups = []
    for group in must:
        if not isinstance(group, list) or not group:
            raise GoldFormatError(message)
        if not all(isinstance(s, str) and normalize(s) for s in group):
            raise GoldFormatError(message)
        short = [s for s in group if len(normalize(s)) < 2]
        if short:  # "3" or "八" is found in almost any answer: it cannot tell right from wrong
            raise GoldFormatError(f"{where}: single-character 'must' value {short[0]!r}: write the unit or the "
                                  "context (\"3所\", \"第三\")")
        groups.append(tuple(group))
    return tuple(groups)


def select_items(items: Sequence[GoldItem], ids: Iterable[str] | None = None,
                 limit: int | None = None, split: str | None = None) -> list[GoldItem]:
    """The items of ``split`` whose id is in ``ids`` (gold order kept), then the first ``limit``; unknown ids
    raise."""
    selected = [item for item in items if split is None or item.split == split]
    if ids is not None:
        wanted = set(ids)
        unknown = sorted(wanted - {item.id for item in items})
        if unknown:
            raise EvalError(f"ids not in the gold set: {', '.join(unknown)}")
        selected = [item for item in selected if item.id in wanted]
    return selected if limit is None else selected[:limit]


# --- matching -------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    return str(_t2s().convert(text))


_WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """``text`` in Simplified script with all whitespace removed: the form answers are matched in."""
    return _WHITESPACE.sub("", to_simplified(text))


def is_correct(answer_text: str, must: Sequence[Sequence[str]]) -> bool:
    """True when every ``must`` group has at least one of its strings in the answer (both normalized)."""
    return all(group_found(answer_text, group) for group in must)


def group_found(answer_text: str, group: Sequence[str]) -> bool:
    """True when one of the ``group``'s alternatives is in the answer (both normalized)."""
    answer = normalize(answer_text)
    return any(normalize(s) in answer for s in group)


def is_right(text: str, refused: bool, citations: Sequence[Citation], item: GoldItem) -> bool:
    """An unanswerable question is answered right only by refusing; an answerable one by an answer that holds
    every ``must`` group. No answer may say, nor cite, what it must not."""
    right = refused if item.doc is None else not refused and is_correct(text, item.must)
    return right and not says_any(text, item.must_not) and not any(says_any(c.text, item.must_not)
                                                                  for c in citations)


def says_any(answer_text: str, forbidden: Sequence[str]) -> bool:
    """True when the answer contains any of the ``forbidden`` strings (both normalized)."""
    answer = normalize(answer_text)
    return any(normalize(s) in answer for s in forbidden)


def doc_matches(doc_id: str, expected: str) -> bool:
    """Gold ``doc`` may be the leading part of the id (e.g. without the extension)."""
    return doc_id.startswith(expected)


def doc_rank(doc_ids: Sequence[str], expected: str) -> int | None:
    """1-based rank of the first id from the expected document, or ``None`` when none is."""
    return next((i for i, doc_id in enumerate(doc_ids, start=1) if doc_matches(doc_id, expected)), None)
