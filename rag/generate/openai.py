"""Any OpenAI-compatible chat server (vLLM, llama.cpp's server, llama-cpp-python's server, Ollama) over HTTP.

Every wait is bounded, so a request never hangs: connecting by ``connect_timeout``, every read and the whole
answer by ``timeout``. A server that cannot be reached (or says it is overloaded) is ``LLMUnavailable``
(503), one that is too slow ``LLMTimeout`` (504), one that answers with an error or breaks off ``LLMError``
(502).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from rag.errors import LLMError, LLMTimeout, LLMUnavailable
from rag.generate.base import Completion, Message

log = logging.getLogger(__name__)


class OpenAIGenerator:
    """Chat completions from a remote server; thread-safe, so several answers may be generated at once."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0,
                 connect_timeout: float = 5.0) -> None:
        self.name = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(headers=headers,
                                  timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)))

    def _body(self, messages: Sequence[Message], max_tokens: int, temperature: float,
              stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.name, "messages": list(messages), "max_tokens": max_tokens,
                                "temperature": temperature, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}  # usage arrives in a last chunk
        return body

    def generate(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Completion:
        with self._translated():
            response = self._http.post(self.url, json=self._body(messages, max_tokens, temperature, False))
            self._raise_for_status(response)
            result = _json(response.text, self.url)
        try:
            text = result["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"the LLM server at {self.url} answered without a message: {str(result)[:200]}") from exc
        usage = result.get("usage") or {}
        return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    def stream(self, messages: Sequence[Message], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        deadline = time.monotonic() + self.timeout
        parts: list[str] = []
        usage: dict[str, Any] = {}
        body = self._body(messages, max_tokens, temperature, True)
        with self._translated(), self._http.stream("POST", self.url, json=body) as response:
            self._raise_for_status(response)
            for chunk in self._chunks(response):
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    if delta := (choice.get("delta") or {}).get("content"):
                        parts.append(delta)
                        yield delta
                if time.monotonic() > deadline:
                    raise LLMTimeout(f"the LLM server at {self.url} did not finish the answer within "
                                     f"{self.timeout:g} s (RAG_LLM_TIMEOUT)")
        # Without a usage chunk (a server that ignores stream_options), count one token per streamed piece.
        completion_tokens = int(usage.get("completion_tokens") or len(parts))
        yield Completion("".join(parts), int(usage.get("prompt_tokens") or 0), completion_tokens)

    def close(self) -> None:
        self._http.close()

    def _chunks(self, response: httpx.Response) -> Iterator[dict[str, Any]]:
        """The JSON payloads of the server-sent events, up to ``[DONE]``."""
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            chunk = _json(data, self.url)
            if "error" in chunk:
                raise LLMError(f"the LLM server at {self.url} failed mid-answer: {_message(chunk)}")
            yield chunk

    def _raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        response.read()
        try:
            message = _message(response.json())
        except ValueError:
            message = response.text[:200]
        said = f"the LLM server at {self.url} answered {response.status_code}: {message}"
        if response.status_code in (429, 503):
            raise LLMUnavailable(said)
        if response.status_code in (408, 504):
            raise LLMTimeout(said)
        raise LLMError(said)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Transport failures as our typed errors (the HTTP layer maps them to 503/504/502)."""
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise LLMUnavailable(f"cannot reach the LLM server at {self.url}: {exc or type(exc).__name__}") from exc
        except httpx.TimeoutException as exc:
            raise LLMTimeout(f"the LLM server at {self.url} sent nothing for {self.timeout:g} s "
                             "(RAG_LLM_TIMEOUT)") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"the LLM server at {self.url} broke off: {exc or type(exc).__name__}") from exc


def _json(text: str, url: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise LLMError(f"the LLM server at {url} sent something that is not JSON: {text[:200]!r}") from exc
    if not isinstance(value, dict):
        raise LLMError(f"the LLM server at {url} sent JSON that is not an object: {text[:200]!r}")
    return value


def _message(payload: Any) -> str:
    """The human part of an OpenAI-style error body."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)[:300]
    return str(error)[:300]
