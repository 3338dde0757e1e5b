"""The local GGUF chat model through llama-cpp-python.

llama.cpp keeps the evaluated tokens of the previous prompt; a request whose prompt starts with the same
tokens (our fixed system prompt) skips evaluating that prefix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.errors import ModelProvisionError
from rag.generate.base import Completion, Message

log = logging.getLogger(__name__)


class LlamaGenerator:
    """A GGUF chat model loaded once. One model in memory generates one answer at a time: a second caller
    waits for the first (the llama.cpp context is not thread-safe)."""

    def __init__(self, path: Path, n_ctx: int = 2048, n_threads: int = 2) -> None:
        if not path.is_file():
            raise ModelProvisionError(f"no GGUF model at {path}; run `rag models` or set RAG_LLM_PATH")
        from llama_cpp import Llama  # heavy: import only when used

        from rag.models.proof import check_decodes

        # Decode once in a child process first: a llama.cpp built for instructions this CPU cannot run must
        # fail there, with a message that says what to do, not crash this process.
        self.proof = check_decodes(path)
        started = time.perf_counter()
        self._llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                          n_batch=512, verbose=False)
        self._busy = threading.Lock()
        self.name = path.stem
        log.info("loaded LLM %s in %.1fs", self.name, time.perf_counter() - started)

    def _call(self, messages: Sequence[Message], max_tokens: int, temperature: float, stream: bool) -> Any:
        return self._llm.create_chat_completion(messages=list(messages), max_tokens=max_tokens,  # type: ignore
                                                temperature=temperature, stream=stream)

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Completion:
        with self._busy:
            result = self._call(messages, max_tokens, temperature, stream=False)
        usage = result["usage"]
        return Completion(result["choices"][0]["message"]["content"] or "", usage["prompt_tokens"],
                          usage["completion_tokens"])

    def stream(self, messages: Sequence[Message], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        parts: list[str] = []
        with self._busy:
            for chunk in self._call(messages, max_tokens, temperature, stream=True):
                delta = chunk["choices"][0]["delta"].get("content")
                if delta:
                    parts.append(delta)
                    yield delta
            text = "".join(parts)
            completion_tokens = self.count_tokens(text, special=False) if text else 0
            prompt_tokens = max(int(self._llm.n_tokens) - completion_tokens, 0)
        yield Completion(text, prompt_tokens, completion_tokens)

    def count_tokens(self, text: str, special: bool = True) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=special))
