"""The deterministic fake behind the ``Generator`` seam, for tests."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from rag.generate.base import Choice, Completion, Message, parse_choice
from rag.normalize import to_simplified


class FakeGenerator:
    """Answers with the first passage's first clause, or the refusal line when there is none; with
    ``reply``, always says that (to test what happens after generation). It chooses sentence 1 when there is
    one (``choice`` says otherwise: "2,3", "无"), and answers from the first chosen sentence.

    Deterministic, instant, and good enough to exercise prompting, citing and streaming in tests.
    """

    name = "fake-llm"

    def __init__(self, refusal: str = "资料中没有找到答案。", reply: str | None = None,
                 choice: str | None = None) -> None:
        self.refusal = refusal
        self.reply = reply
        self.choice = choice

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

    def choose(self, messages: Sequence[Message], lead: str, options: int) -> Choice:
        said = self.choice if self.choice is not None else _sharing(messages[-1]["content"])
        return parse_choice(said, options, prompt_tokens=sum(len(m["content"]) for m in messages))

    def stream_on(self, messages: Sequence[Message], lead: str, max_tokens: int,
                  temperature: float) -> Iterator[str | Completion]:
        if self.reply is not None:
            text = self.reply
        else:
            match = re.search(r"依据：([^\n，,。]+)", lead)
            text = match.group(1) + "。" if match else self.refusal
        text = text[: max(max_tokens, 1) * 2]
        for i in range(0, len(text), 4):
            yield text[i:i + 4]
        yield Completion(text, sum(len(m["content"]) for m in messages) + len(lead), len(text))


def _bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1) if re.fullmatch(r"[\u4e00-\u9fff]{2}", text[i:i + 2])}


def _sharing(user: str) -> str:
    """The numbers of the sentences that share the most pairs of characters with the question (two at
    least), else 无: a crude model that chooses by shared words."""
    user = to_simplified(user)
    question = _bigrams(user.rsplit("问题：", 1)[-1])
    shared = {int(n): len(question & _bigrams(text)) for n, text in re.findall(r"^\[(\d+)\] (.*)$", user, re.M)}
    best = max(shared.values(), default=0)
    return ",".join(str(n) for n, count in shared.items() if count == best) if best >= 2 else "无"
