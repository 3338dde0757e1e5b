"""Refuse: every rule that can turn an answer into a refusal, as named checks.

Each check has a name, the setting that holds its threshold (if any) and a reason string that starts with
the name and states the number that decided, e.g. ``coverage 0.31 < 0.5 (missing 火星)``. A report can so
say which check refused. Checks run in the order of ``BEFORE`` (on the evidence, before the model runs)
and ``AFTER`` (on the model's answer and the sentences it was given); the first that fails decides.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag import cite as citing
from rag.config import Settings
from rag.evidence import Evidence
from rag.intent import Intent
from rag.lang import CHOICE_QUESTION
from rag.normalize import to_simplified
from rag.types import Citation, Sentence


@dataclass(frozen=True)
class Check:
    """A named refusal rule; ``setting`` names its threshold in ``Settings`` ("" when it has none)."""

    name: str
    setting: str
    what: str


BEFORE = (
    Check("not_a_question", "", "the message is structured data (a JSON object or array), not a question"),
    Check("coverage", "min_coverage", "the best document holds too little of the question's content weight"),
)
AFTER = (
    Check("model_not_found", "", "the model said the passages do not hold the answer"),
    Check("echo", "", "the answer only repeats the question's words"),
    Check("invented_numbers", "", "the answer holds numbers found neither in the evidence nor the question"),
    Check("miscounted", "", "the answer's figure counts something else than the evidence's same number (47分, 47次)"),
    Check("answer_type", "", "the answer is not of the kind asked: a who-question's by no one and nothing the "
                             "evidence names, a how-many question's by no figure in the measure asked "
                             "(the question's own not counted), a when-question's by no date (in the unit asked)"),
    Check("support", "", "no sentence given to the model supports the answer"),
)


@dataclass(frozen=True)
class Answered:
    """What the post-generation checks read: the model's answer and what it was given. ``question`` (Simplified)
    is what the question brought, a follow-up's earlier turn included; ``message`` is the user's own question
    of this turn (Simplified; "" when it is ``question``)."""

    text: str
    question: str
    chosen: Sequence[Sentence]
    message: str = ""


def is_structured(question: str) -> bool:
    """True when the message is a JSON object or array: data sent as the content, not a question."""
    text = question.strip()
    if not text or text[0] not in "{[":
        return False
    try:
        return isinstance(json.loads(text), dict | list)
    except ValueError:
        return False


class Refuser:
    """The checks with the thresholds of one ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @staticmethod
    def before_retrieval(question: str) -> str:
        """The reason to refuse the message before looking anything up, or ""."""
        return "not_a_question: the message is a JSON value, not a question" if is_structured(question) else ""

    def before(self, evidence: Evidence) -> str:
        """The reason to refuse on the retrieved evidence, before generation, or "" to go on."""
        s = self.settings
        if evidence.coverage < s.min_coverage:
            missing = f" (missing {'、'.join(evidence.missing)})" if evidence.missing else ""
            return f"coverage {evidence.coverage:.2f} < {s.min_coverage}{missing}"
        return ""

    def after(self, answered: Answered, intent: Intent) -> str:
        """The reason to refuse the model's answer, or "" when it may stand (citations still to come)."""
        for check in _AFTER_RULES:
            if reason := check(self, answered, intent):
                return reason
        return ""

    @staticmethod
    def support(citations: Sequence[Citation]) -> str:
        return "" if citations else "support: 0 sentences support the answer"

    # --- the post-generation rules, in order ------------------------------------------------------------
    def _model_not_found(self, a: Answered, intent: Intent) -> str:
        if not a.text.strip() or citing.says_not_found(a.text):
            return "model_not_found: the model said the passages hold no answer"
        return ""

    def _echo(self, a: Answered, intent: Intent) -> str:
        # «辽源市通过评选“大先生”荣誉来…» to «辽源市通过评选哪些荣誉来…»: a small model that cannot find the answer
        # often rewrites the question as one. Only a choice question (是否/还是/吗) is answered in its own words;
        # a follow-up's answer may stand in the earlier turn (排名第六 answered 那北部呢？ already).
        message = a.message or a.question
        if citing.own_words(a.text, message) or CHOICE_QUESTION.search(message):
            return ""
        return "echo: 0 words of the answer are not the question's"

    def _invented_numbers(self, a: Answered, intent: Intent) -> str:
        invented = citing.unsupported_numbers(a.text, a.chosen, a.question)
        return f"invented_numbers: {sorted(invented)} not in the evidence" if invented else ""

    def _miscounted(self, a: Answered, intent: Intent) -> str:
        wrong = citing.miscounted(a.text, a.chosen, a.question)
        return f"miscounted: {sorted(wrong)} count something else in the evidence" if wrong else ""

    def _answer_type(self, a: Answered, intent: Intent) -> str:
        if intent.kind == "person" and not citing.named(a.text, a.chosen, a.question):
            return "answer_type: the answer to a who-question names no one and nothing of the evidence"
        if intent.measure and not citing.counts_in(a.text, intent.measure, a.message or a.question):
            if intent.when:
                return f"answer_type: no date in {intent.measure[0]} in the answer to a when-question"
            return (f"answer_type: no figure in {intent.measure[0]} other than the question's in the answer to a "
                    "how-many question")
        if intent.when and not citing.numbers(to_simplified(a.text)):
            return "answer_type: no date in the answer to a when-question"
        return ""


_AFTER_RULES: tuple[Callable[[Refuser, Answered, Intent], str], ...] = (
    Refuser._model_not_found, Refuser._echo, Refuser._invented_numbers, Refuser._miscounted, Refuser._answer_type,
)
