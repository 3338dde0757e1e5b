"""Generate: the local GGUF chat model through llama-cpp-python, behind the ``Generator`` seam.

llama.cpp keeps the evaluated tokens of the previous prompt; a request whose prompt starts with the same
tokens (our fixed system prompt) skips evaluating that prefix.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag.config import Settings
from rag.errors import ModelProvisionError

log = logging.getLogger(__name__)

Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
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


class LlamaGenerator:
    """A GGUF chat model loaded once; callers serialize access (one generation at a time)."""

    def __init__(self, path: Path, n_ctx: int = 2048, n_threads: int = 2) -> None:
        if not path.is_file():
            raise ModelProvisionError(f"no GGUF model at {path}; run `rag models` or set RAG_LLM_PATH")
        from llama_cpp import Llama  # heavy: import only when used

        started = time.perf_counter()
        self._llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                          n_batch=512, verbose=False)
        self.name = path.stem
        log.info("loaded LLM %s in %.1fs", self.name, time.perf_counter() - started)

    def _call(self, messages: Sequence[Message], max_tokens: int, temperature: float, stream: bool) -> Any:
        return self._llm.create_chat_completion(messages=list(messages), max_tokens=max_tokens,  # type: ignore
                                                temperature=temperature, stream=stream)

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Completion:
        result = self._call(messages, max_tokens, temperature, stream=False)
        usage = result["usage"]
        return Completion(result["choices"][0]["message"]["content"] or "", usage["prompt_tokens"],
                          usage["completion_tokens"])

    def stream(self, messages: Sequence[Message], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        parts: list[str] = []
        for chunk in self._call(messages, max_tokens, temperature, stream=True):
            delta = chunk["choices"][0]["delta"].get("content")
            if delta:
                parts.append(delta)
                yield delta
        text = "".join(parts)
        completion_tokens = len(self._llm.tokenize(text.encode(), add_bos=False, special=False)) if text else 0
        yield Completion(text, max(int(self._llm.n_tokens) - completion_tokens, 0), completion_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=True))


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


_BACKENDS: dict[str, Callable[[Settings], Generator]] = {
    "llama-cpp": lambda s: LlamaGenerator(s.resolved_llm_path, s.n_ctx, s.n_threads),
    "fake": lambda s: FakeGenerator(),
}


def build_generator(settings: Settings) -> Generator:
    """The generator the settings name."""
    return _BACKENDS[settings.llm_backend](settings)
