"""The local GGUF chat model through llama-cpp-python.

llama.cpp keeps the evaluated tokens of the previous prompt; a request whose prompt starts with the same
tokens (our fixed system prompt, or the turn ``choose`` just evaluated) skips evaluating that prefix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelProvisionError
from rag.generate.base import NONE, Choice, Completion, Message, parse_choice

log = logging.getLogger(__name__)

# Sentence numbers or 无, then a line break: nothing else can be written (scripts/bench_select.py measured a
# grammar at 0.95× the time of free generation with Qwen's 151k-token vocabulary).
_CHOICE_GRAMMAR = f'root ::= ("{NONE}" | num ("," num)*) "\\n"\nnum ::= [1-9] | [1-9] [0-9]\n'
_CHOICE_TOKENS = 24


class LlamaGenerator:
    """A GGUF chat model loaded once. One model in memory generates one answer at a time: a second caller
    waits for the first (the llama.cpp context is not thread-safe)."""

    def __init__(self, path: Path, n_ctx: int = 2048, n_threads: int = 2) -> None:
        if not path.is_file():
            raise ModelProvisionError(f"no GGUF model at {path}; run `rag models` or set RAG_LLM_PATH")
        from llama_cpp import Llama, LlamaGrammar  # heavy: import only when used
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from rag.models.proof import check_decodes

        # Decode once in a child process first: a llama.cpp built for instructions this CPU cannot run must
        # fail there, with a message that says what to do, not crash this process.
        self.proof = check_decodes(path)
        started = time.perf_counter()
        self._llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                          n_batch=512, verbose=False)
        self._busy = threading.Lock()
        self.name = path.stem
        model = self._llm._model
        self._format = Jinja2ChatFormatter(self._llm.metadata["tokenizer.chat_template"],
                                           model.token_get_text(self._llm.token_eos()),
                                           model.token_get_text(self._llm.token_bos()))
        self._grammar = LlamaGrammar.from_string(_CHOICE_GRAMMAR, verbose=False)
        # The first token of 无 and of each digit: P(none) is read against the numbers it could write instead.
        self._first_ids = [self._token(NONE), *(self._token(str(d)) for d in range(1, 10))]
        log.info("loaded LLM %s in %.1fs", self.name, time.perf_counter() - started)

    def _token(self, text: str) -> int:
        return self._llm.tokenize(text.encode(), add_bos=False)[0]

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

    def _prompt(self, messages: Sequence[Message], lead: str) -> list[int]:
        text = self._format(messages=list(messages)).prompt + lead  # type: ignore[arg-type]
        return self._llm.tokenize(text.encode(), add_bos=True, special=True)

    def choose(self, messages: Sequence[Message], lead: str, options: int) -> Choice:
        from llama_cpp import LogitsProcessorList

        tokens = self._prompt(messages, lead)
        first: list[np.ndarray] = []

        def capture(_ids: Any, logits: np.ndarray) -> np.ndarray:  # sees the raw logits, before the grammar
            if not first:
                first.append(np.asarray(logits[self._first_ids], dtype=np.float64))
            return logits

        with self._busy:
            out = self._llm.create_completion(tokens, max_tokens=_CHOICE_TOKENS, temperature=0.0,  # type: ignore
                                              grammar=self._grammar, logits_processor=LogitsProcessorList([capture]))
        said = str(out["choices"][0]["text"])  # type: ignore[index]
        p_none = None
        if first:
            weights = np.exp(first[0] - first[0].max())
            p_none = float(weights[0] / weights.sum())
        return parse_choice(said, options, p_none, len(tokens))

    def stream_on(self, messages: Sequence[Message], lead: str, max_tokens: int,
                  temperature: float) -> Iterator[str | Completion]:
        from llama_cpp import LogitsProcessorList

        tokens = self._prompt(messages, lead)
        parts: list[str] = []
        scores = _TokenScores()
        with self._busy:
            for chunk in self._llm.create_completion(tokens, max_tokens=max_tokens, temperature=temperature,
                                                     stream=True, stop=["\n"],  # type: ignore[union-attr]
                                                     logits_processor=LogitsProcessorList([scores])):
                if delta := chunk["choices"][0]["text"]:  # type: ignore[index]
                    parts.append(delta)
                    yield delta
        text = "".join(parts)
        yield Completion(text, len(tokens), self.count_tokens(text, special=False) if text else 0,
                         scores.mean() if text else None)

    def count_tokens(self, text: str, special: bool = True) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=special))


class _TokenScores:
    """A logits processor that leaves the logits as they are and notes the log-probability of each token
    written: at each step the previous step's token is the last input id. Costs a copy of the row (llama.cpp
    overwrites it) and a log-sum-exp over the vocabulary a token: 0.2 ms for Qwen's 151k tokens in float32,
    1.9 ms in float64, against tens of milliseconds to generate the token."""

    def __init__(self) -> None:
        self._previous: tuple[np.ndarray, float] | None = None
        self.logprobs: list[float] = []

    def __call__(self, ids: Any, logits: np.ndarray) -> np.ndarray:
        if self._previous is not None:
            previous, norm = self._previous
            self.logprobs.append(float(previous[int(ids[-1])]) - norm)
        row = np.array(logits, dtype=np.float32, copy=True)
        top = float(row.max())
        self._previous = (row, top + float(np.log(np.exp(row - top).sum(dtype=np.float64))))
        return logits

    def mean(self) -> float | None:
        return float(np.mean(self.logprobs)) if self.logprobs else None
