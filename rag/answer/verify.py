"""Verify: the answer is sent only as far as it is checked, and cited from the sentences it rests on."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, replace

from rag.formats import page_span
from rag.generate import Completion
from rag.index import Index
from rag.normalize import to_simplified, to_traditional
from rag.types import Citation

# Where an answer may be cut: after a clause's punctuation, but not after a comma inside a number (5,000),
# nor after a colon (what it announces is the answer).
_CLAUSE_END = re.compile(r"[，。；！？、;!?\n]|(?<!\d),")
NOTHING_WRITTEN = "model_not_found: the model said the passages hold no answer"


@dataclass(frozen=True)
class Verdict:
    """The checks' decision on an answer text: a refusal reason, or its citations. ``informs``: the text
    says something the question did not (a prefix that only repeats the question is not worth sending);
    ``cut``: why the answer is a prefix of what the model wrote (the rest failed a check)."""

    reason: str
    citations: tuple[Citation, ...] = ()
    informs: bool = False
    cut: str = ""


class StreamVerifier:
    """Sends the model's text only as far as it is verified: after each delta, the text up to its last clause
    boundary (，。；、…) is checked, and when it passes (and informs) it is released, converted to the
    question's script. A prefix is only ever cut at a boundary: "20" of "2023年" or "一" of "一校一品牌" is
    no answer, and checking it would let a number or name pass half-written. Conversion works on phrases
    (布局 → 佈局), which never span a boundary, so a converted prefix is a prefix of the converted whole.

    ``complete`` rewrites the whole text before its verdict (a list answer is completed from the source);
    with it, nothing is sent before the end, since the rewrite may change what came first. ``hold`` sends
    nothing before the end either: a decision made on the whole answer may still retract it."""

    def __init__(self, verdict: Callable[[str], Verdict], traditional: bool,
                 complete: Callable[[str], str] | None = None, hold: bool = False) -> None:
        self._verdict = verdict
        self._convert = to_traditional if traditional else to_simplified
        self._complete = complete
        self._hold = hold or complete is not None
        self._raw = ""
        self._checked = ""
        self._passed: tuple[str, Verdict] | None = None
        self.sent = ""

    def feed(self, delta: str) -> str:
        """The newly verified text ("" when there is none yet)."""
        self._raw += delta
        text = clause_prefix(self._raw).strip()
        if not text or text == self._checked:
            return ""
        self._checked = text
        verdict = self._verdict(text)
        if verdict.reason or not verdict.informs:
            return ""
        self._passed = (text, verdict)
        return "" if self._hold else self._release(self._convert(text))

    def finish(self, whole: str) -> tuple[Verdict, str]:
        """The verdict on the answer (the whole text, else the longest passing prefix) and the text still to
        send. A refusal comes only when nothing was sent."""
        text = whole.strip()
        completed = self._complete(text) if text and self._complete else text
        if completed != text and not (verdict := self._verdict(completed)).reason:
            return verdict, self._release(self._convert(completed))
        verdict = self._verdict(text) if text else Verdict(NOTHING_WRITTEN)
        if verdict.reason and self._passed is not None:
            text, passed = self._passed
            verdict = replace(passed, cut=f"cut after {len(text)} characters: {verdict.reason}")
        if verdict.reason:
            return verdict, ""
        converted = self._convert(text)
        return verdict, self._release(self.sent + converted[len(self.sent):])

    def _release(self, converted: str) -> str:
        if len(converted) <= len(self.sent) or not converted.startswith(self.sent):
            return ""
        piece, self.sent = converted[len(self.sent):], converted
        return piece



def clause_prefix(text: str) -> str:
    """``text`` up to and including its last clause boundary ("" when it has none yet)."""
    ends = [m.end() for m in _CLAUSE_END.finditer(text)]
    return text[:ends[-1]] if ends else ""


def with_pages(citation: Citation, index: Index) -> Citation:
    """The citation with the pages its span covers, for a paged document (PDF)."""
    record = index.documents.get(citation.doc_id)
    page, page_end = page_span(record.pages if record else (), citation.start, citation.end)
    return replace(citation, page=page, page_end=page_end) if page else citation


def released(deltas: Iterable[str | Completion], verifier: StreamVerifier, timings: dict[str, float],
             started: float) -> Generator[str, None, Completion]:
    """The model's deltas fed to ``verifier``: yields what it releases ("" ticks while it holds text back),
    notes when the model's first text and the first released text came, and returns the ``Completion``."""
    completion: Completion | None = None
    for item in deltas:
        if isinstance(item, Completion):
            completion = item
            continue
        timings.setdefault("model_first_token", time.perf_counter() - started)
        if piece := verifier.feed(item):
            timings.setdefault("first_token", time.perf_counter() - started)
        yield piece
    assert completion is not None
    return completion
