"""Refuse, in the choose stage (``rag.answer.stage``): every way an answer becomes a refusal, as named checks.

Each check has a name, the setting that holds its threshold (if any) and a reason string that starts with
the name and states what decided, e.g. ``answerability 0.31 < 0.52 (p_none 0.81, coverage 0.40, …)``. A
report can so say which check refused. The only guess among them is ``answerability``, a model fitted on
tuning data (``rag.answer.answerability``); the rest are facts: there is nothing to look at, the model chose
nothing or said it found nothing, the answer says nothing the question did not, the answer holds a number
that stands in no source, or none of its own words stands in the sentences it rests on.
"""

from __future__ import annotations

from rag.cite import grounding, own_words, says_not_found, unsupported_numbers
from rag.lang import CHOICE_QUESTION
from rag.refuse import Check, is_structured
from rag.types import Sentence

CHECKS = (
    Check("not_a_question", "", "the message is structured data (a JSON object or array), not a question"),
    Check("nothing_found", "", "retrieval found no passage"),
    Check("model_none", "", "the model chose none of the numbered sentences"),
    Check("answerability", "min_confidence", "the fitted probability that the answer will be right is below "
                                             "the threshold"),
    Check("model_not_found", "", "the model's answer says the passages hold no answer"),
    Check("echo", "", "the answer holds no word the user's question did not (a choice question aside)"),
    Check("invented_numbers", "", "the answer holds numbers found neither in the evidence nor the question"),
    Check("ungrounded", "", "none of the answer's own words (those the question did not bring) stands in the "
                            "sentences it rests on"),
)


def before_retrieval(question: str) -> str:
    """The reason to refuse the message before looking anything up, or ""."""
    return "not_a_question: the message is a JSON value, not a question" if is_structured(question) else ""


def after(answer: str, evidence: list[Sentence], asked: str, message: str = "") -> str:
    """The reason to refuse the model's answer (or a prefix of it), or "" when it may stand. ``asked``: all
    the question brought (a follow-up's earlier turn too); ``message``: the user's question of this turn
    (Simplified; "" when it is ``asked``), which a follow-up's answer may not merely repeat, though it may
    repeat the earlier turn."""
    if not answer.strip() or says_not_found(answer):
        return "model_not_found: the model said the passages hold no answer"
    message = message or asked
    if not own_words(answer, message) and not CHOICE_QUESTION.search(message):
        return "echo: the answer holds no word the question did not"
    if invented := unsupported_numbers(answer, evidence, asked):
        return f"invented_numbers: {sorted(invented)} not in the evidence"
    if grounding(answer, asked, evidence) == 0.0:
        return "ungrounded: none of the answer's own words is in the sentences it rests on"
    return ""
