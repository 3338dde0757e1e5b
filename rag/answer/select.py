"""Select: the system prompt of the choose stage, and the leads the code writes into its answer turn."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from rag.generate.base import Choice
from rag.prompt import focus
from rag.types import Sentence

CHOOSE = "句子："
SYSTEM_FILE = "choose.txt"


def load_system(prompts_dir: Path) -> str:
    """The fixed system prompt of the choose stage: the two steps and three made-up examples."""
    return (prompts_dir / SYSTEM_FILE).read_text("utf-8").strip()


def answer_sources(candidates: Sequence[Sentence], choice: Choice) -> list[Sentence]:
    """The sentences the answer is written from, in the order shown: the model's choice and the ranker's best
    sentence. The 1.5B model often picks a neighbour of the right sentence while the ranker's first one holds
    the answer (gold dev, choice step alone: 47 of 76 questions' picks hold it, the first sentence 67); both
    together answered 0.92 of the first 60 dev questions against 0.84 for the choice alone."""
    return [candidates[i - 1] for i in sorted({1, *choice.picked})] if choice.picked else []


def answer_lead(choice: Choice, chosen: Sequence[Sentence]) -> str:
    """The assistant turn up to the answer: the model's choice, then the sentences to answer from
    (``answer_sources``) copied by the code (a 1.5B model answers better from the right few sentences than
    from all of them)."""
    return f"{CHOOSE}{choice.said}\n依据：{''.join(s.text for s in chosen)}\n回答："


def follow_up_sources(sources: Sequence[Sentence], terms: Sequence[str],
                      weight: Callable[[str], float]) -> list[Sentence]:
    """A follow-up's sentences to answer from as the model is shown them: each narrowed to the clause its own
    words (``terms``, by ``weight``) point at more than at any other, closed with 。. The sentence often holds
    the earlier turn's answer too (…排名第三,在北部生态发展区…排名第六), and the 1.5B model then answers both
    or the earlier one: on the gold ``dev`` follow-ups, 13 of 14 right and to the point with the clause, 11 with
    the whole sentence. Citations still come from the whole sentence."""
    return [_closed(focus(s, terms, weight, lambda clause: True)) for s in sources]


def _closed(sentence: Sentence) -> Sentence:
    if sentence.text[-1:] in "。！？；;!?":
        return sentence
    return replace(sentence, text=sentence.text + "。", simplified=sentence.simplified + "。")
