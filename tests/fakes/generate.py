"""The deterministic fake behind the ``Generator`` seam, for tests."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from rag.generate.base import Completion, Message


class FakeGenerator:
    """Answers with the first passage's first clause, or the refusal line when there is none; with
    ``reply``, always says that (to test what happens after generation).

    Deterministic, instant, and good enough to exercise prompting, citing and streaming in tests.
    """

    name = "fake-llm"

    def __init__(self, refusal: str = "资料中没有找到答案。", reply: str | None = None) -> None:
        self.refusal = refusal
        self.reply = reply

    def _answer(self, messages: Sequence[Message]) -> str:
        if self.reply is not None:
            return self.reply
        match = re.search(r"\[1\]\s*([^\n，,。]+)", messages[-1]["content"])
        return match.group(1) + "。" if match else self.refusal

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Completion:
        text = self._answer(messages)[: max(max_tokens, 1) * 2]
        return Completion(text, sum(len(m["content"]) for m in messages), len(text))

    def stream(self, messages: Sequence[Message], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        completion = self.generate(messages, max_tokens, temperature)
        for i in range(0, len(completion.text), 4):
            yield completion.text[i:i + 4]
        yield completion
