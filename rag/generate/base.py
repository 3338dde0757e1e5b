"""The ``Generator`` seam: chat messages in, text deltas and a ``Completion`` with token counts out."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
    """What the model wrote, and what it cost in tokens."""

    text: str
    prompt_tokens: int
    completion_tokens: int


class Generator(Protocol):
    name: str

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Completion: ...

    def stream(self, messages: Sequence[Message], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        """Text deltas as they are generated; the last item is the whole ``Completion``."""
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
