"""The ``Generator`` seam: chat messages in, text deltas and a ``Completion`` with token counts out; and the
two steps of the answer stage (``rag.answer``): choose numbered sentences, then continue the same turn."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

Message = dict[str, str]

NONE = "无"
"""What the model writes when no numbered sentence answers the question."""
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Completion:
    """What the model wrote; ``logprob``: the mean log-probability of its tokens, where the backend reports it
    (the model's confidence in its own answer, one of the answerability signals)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    logprob: float | None = None


@dataclass(frozen=True)
class Choice:
    """The sentences the model chose: their numbers (1-based, in its order, no repeats; empty for none), what
    it wrote, and its probability of writing none first (``p_none``: from the first step's logits, against
    the sentence numbers; 1.0 or 0.0 from a backend that reports no probabilities)."""

    picked: tuple[int, ...]
    said: str
    p_none: float
    prompt_tokens: int = 0


def parse_choice(said: str, options: int, p_none: float | None = None, prompt_tokens: int = 0) -> Choice:
    """The numbers 1…``options`` in ``said`` ("2,5"), or none when it says 无 first or names no valid number."""
    first = said.strip()[:1]
    picked = () if first == NONE else tuple(dict.fromkeys(
        n for n in (int(m) for m in _NUMBER.findall(said)) if 1 <= n <= options))
    if p_none is None:
        p_none = 0.0 if picked else 1.0
    return Choice(picked, said.strip(), p_none, prompt_tokens)


class Generator(Protocol):
    name: str

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Completion: ...

    def stream(self, messages: Sequence[Message], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        """Text deltas as they are generated; the last item is the whole ``Completion``."""
        ...

    def choose(self, messages: Sequence[Message], lead: str, options: int) -> Choice:
        """The assistant turn that starts with ``lead`` (句子：) goes on with the numbers (1…``options``) of
        the sentences that answer, or 无: a grammar allows nothing else where the backend has one."""
        ...

    def stream_on(self, messages: Sequence[Message], lead: str, max_tokens: int,
                  temperature: float) -> Iterator[str | Completion]:
        """Continue the assistant turn that starts with ``lead``: deltas, then the ``Completion`` (the
        evaluated prompt of ``choose`` is reused where the backend keeps it)."""
        ...


class GenerationSlots:
    """At most ``size`` generations at once (``RAG_MAX_PARALLEL_GENERATIONS``); others wait for a slot.

    A context manager, like the lock it replaces; ``locked()`` is true while every slot is taken.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1. Currently, size is {size}")
        self.size = size
        self._free = threading.BoundedSemaphore(size)
        self._count = threading.Lock()
        self.in_use = 0

    def __enter__(self) -> GenerationSlots:
        self._free.acquire()
        with self._count:
            self.in_use += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._count:
            self.in_use -= 1
        self._free.release()

    def locked(self) -> bool:
        return self.in_use >= self.size
