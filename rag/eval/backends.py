"""What the evaluator sees of the service: in process (``RagService``) or over the public HTTP API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

from rag.errors import RagError
from rag.eval.gold import EvalError, to_simplified
from rag.types import Answer, Citation, Hit

T = TypeVar("T")

# A CPU model can take minutes on a long answer; connecting should still fail fast.
HTTP_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
# Statuses that mean every question will fail the same way (wrong URL or key): stop instead of recording.
_FATAL_STATUSES = {401, 403, 404, 405}


class QuestionFailed(RagError):
    """One question could not be evaluated; the run records it and goes on."""


class Service(Protocol):
    """The part of ``rag.service.RagService`` the evaluator uses."""

    def search(self, query: str, top_k: int = 5, doc_ids: list[str] | None = None) -> list[Hit]: ...

    def answer(self, messages: list[dict[str, str]], max_tokens: int | None = None,
               temperature: float | None = None) -> Answer: ...

    def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str | Answer]: ...


@dataclass(frozen=True)
class Passage:
    """One retrieved passage: where it is and its text in Simplified script."""

    doc_id: str
    start: int
    end: int
    simplified: str
    score: float


@dataclass(frozen=True)
class Reply:
    """A streamed answer as received. ``ttft_s``: seconds to the first text delta, or to the end when
    nothing was streamed before it; ``prompt_tokens`` is ``None`` when the server did not report usage."""

    text: str
    citations: tuple[Citation, ...]
    refused: bool
    prompt_tokens: int | None
    answer_s: float
    ttft_s: float | None
    reason: str | None = None  # the check that refused (``Answer.reason``); ``None`` when not reported
    context: tuple[str, ...] | None = None  # what the model was shown, Simplified; ``None`` when not reported


def drain(stream: Iterable[object], final_type: type[T]) -> tuple[T, float, float]:
    """Consume a stream of text pieces that ends in one ``final_type`` value: that value, the seconds it took
    in all, and the seconds to its first text (all of it, when no text came)."""
    started = time.perf_counter()
    ttft: float | None = None
    final: T | None = None
    for item in stream:
        if isinstance(item, final_type):
            final = item
        elif item and ttft is None:
            ttft = time.perf_counter() - started
    elapsed = time.perf_counter() - started
    if final is None:
        raise QuestionFailed(f"the stream ended without a final {final_type.__name__}")
    return final, elapsed, ttft if ttft is not None else elapsed


class Backend(Protocol):
    def search(self, query: str, k: int) -> list[Passage]: ...

    def ask(self, messages: list[dict[str, str]]) -> Reply: ...


class InProcessBackend:
    """Calls a ``RagService`` directly; streams so time to first token is measured."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def search(self, query: str, k: int) -> list[Passage]:
        return [Passage(h.chunk.doc_id, h.chunk.start, h.chunk.end, h.chunk.simplified, h.score)
                for h in self._service.search(query, top_k=k)]

    def ask(self, messages: list[dict[str, str]]) -> Reply:
        final, elapsed, ttft = drain(self._service.stream(messages), Answer)
        return Reply(final.text, tuple(final.citations), final.refused, final.prompt_tokens, elapsed, ttft,
                     final.reason or None, tuple(s.simplified for s in final.context))


class HttpBackend:
    """Uses only the public HTTP API: ``/v1/search`` and streaming ``/v1/chat/completions``."""

    def __init__(self, client: httpx.Client, url: str, api_key: str | None = None) -> None:
        self._client = client
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def search(self, query: str, k: int) -> list[Passage]:
        with self._request("/v1/search", {"query": query, "top_k": k}) as response:
            response.read()
            try:
                results = response.json()["results"]
                return [Passage(r["doc_id"], int(r["start"]), int(r["end"]), to_simplified(r["text"]),
                                float(r.get("score", 0.0))) for r in results]
            except (ValueError, KeyError, TypeError) as exc:
                raise QuestionFailed(f"unexpected /v1/search response: {exc!r}") from exc

    def ask(self, messages: list[dict[str, str]]) -> Reply:
        body = {"model": "rag", "messages": messages, "stream": True}
        started = time.perf_counter()
        ttft: float | None = None
        parts: list[str] = []
        final: dict[str, Any] = {}
        with self._request("/v1/chat/completions", body) as response:
            for event in parse_sse(response.iter_lines()):
                delta = _delta_content(event)
                if delta and ttft is None:
                    ttft = time.perf_counter() - started
                parts.append(delta)
                final.update({key: event[key] for key in ("citations", "refused", "usage", "reason", "context")
                              if key in event})
        elapsed = time.perf_counter() - started
        usage = final.get("usage") or {}
        return Reply("".join(parts), _parse_citations(final.get("citations") or []),
                     bool(final.get("refused", False)), usage.get("prompt_tokens"), elapsed,
                     ttft if ttft is not None else elapsed, final.get("reason") or None,
                     _parse_context(final["context"]) if "context" in final else None)

    @contextmanager
    def _request(self, path: str, body: dict[str, Any]) -> Iterator[httpx.Response]:
        url = f"{self._url}{path}"
        try:
            with self._client.stream("POST", url, json=body, headers=self._headers) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_status(url, response)
                yield response
        except httpx.TimeoutException as exc:
            raise QuestionFailed(f"{url}: timed out ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise EvalError(f"cannot reach {url}: {exc!r}") from exc


def _raise_for_status(url: str, response: httpx.Response) -> None:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    text = f"{url}: HTTP {response.status_code}: {message}"
    raise EvalError(text) if response.status_code in _FATAL_STATUSES else QuestionFailed(text)


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of ``data:`` lines up to ``data: [DONE]``; an error event raises."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError as exc:
            raise QuestionFailed(f"bad server-sent event: {data[:100]!r}") from exc
        if isinstance(event, dict) and "error" in event:
            raise QuestionFailed(f"error event in stream: {event['error']}")
        yield event


def _delta_content(event: dict[str, Any]) -> str:
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def _parse_citations(raw: list[dict[str, Any]]) -> tuple[Citation, ...]:
    try:
        return tuple(Citation(c["doc_id"], int(c["start"]), int(c["end"]), c["text"], c.get("section", ""))
                     for c in raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise QuestionFailed(f"malformed citations in the final chunk: {exc!r}") from exc


def _parse_context(raw: Any) -> tuple[str, ...]:
    try:
        return tuple(to_simplified(str(passage["text"])) for passage in raw)
    except (KeyError, TypeError) as exc:
        raise QuestionFailed(f"malformed context in the final chunk: {exc!r}") from exc
