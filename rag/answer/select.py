"""Select: the chat for the two steps of the answer turn, and the leads the code writes into it."""

from __future__ import annotations

from collections.abc import Sequence

from rag.generate.base import Choice
from rag.types import Sentence

CHOOSE = "句子："


def answer_lead(choice: Choice, chosen: Sequence[Sentence]) -> str:
    """The assistant turn up to the answer: the model's choice, then the chosen sentences copied by the code
    (a 1.5B model answers better from the right few sentences than from all of them)."""
    return f"{CHOOSE}{choice.said}\n依据：{''.join(s.text for s in chosen)}\n回答："

