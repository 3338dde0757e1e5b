"""HTTP schemas and routes: OpenAI-compatible chat completions, search, documents, health.

Pydantic lives here only, at the edge; inside, the frozen dataclasses of ``rag.types`` carry the data.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from rag.errors import Busy, InvalidRequest, PayloadTooLarge, Unauthorized
from rag.service import RagService
from rag.types import Answer, Citation


# --- schemas -----------------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict[str, Any]] = ""

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=2048)
    stream: bool = False


class SearchRequest(BaseModel):
    query: str = Field(..., min_length=1)
    top_k: int = Field(5, ge=1, le=100)
    doc_ids: list[str] | None = None


class CitationOut(BaseModel):
    doc_id: str
    start: int
    end: int
    text: str
    section: str


class SearchResult(BaseModel):
    doc_id: str
    chunk_id: str
    start: int
    end: int
    section: str
    text: str
    score: float


class SearchResponse(BaseModel):
    results: list[SearchResult]


class DocumentOut(BaseModel):
    id: str
    title: str
    characters: int
    chunks: int
    sha256: str
    ingested_at: str


class DocumentText(DocumentOut):
    """A document's text: the characters that ``start``/``end`` of chunks and citations index."""

    object: Literal["document.text"] = "document.text"
    text: str


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentOut]


# --- the generation gate -----------------------------------------------------------------------------
class Gate:
    """Admits one running generation plus ``queue_size`` waiting; past that, ``Busy`` (503)."""

    def __init__(self, queue_size: int) -> None:
        self._limit = queue_size + 1
        self._count = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self._count >= self._limit:
                raise Busy(f"the model is busy and {self._limit - 1} requests are already waiting; retry shortly")
            self._count += 1

    def leave(self) -> None:
        with self._lock:
            self._count -= 1


# --- helpers -----------------------------------------------------------------------------------------
def get_service(request: Request) -> RagService:
    service: RagService = request.app.state.service
    return service


def check_key(request: Request) -> None:
    key = request.app.state.settings.api_key
    if key and request.headers.get("authorization", "") != f"Bearer {key}":
        raise Unauthorized()


def _citations(answer: Answer) -> list[dict[str, Any]]:
    return [CitationOut(**c.__dict__).model_dump() for c in answer.citations if isinstance(c, Citation)]


def _usage(answer: Answer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


def _envelope(kind: str, model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": kind, "created": int(time.time()), "model": model}


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


# --- routes ------------------------------------------------------------------------------------------
router = APIRouter()
v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])
Service = Annotated[RagService, Depends(get_service)]


@router.get("/health")
def health(service: Service) -> dict[str, Any]:
    """Whether the service can answer, with the loaded model names and index counts."""
    docs = service.documents()
    return {"status": "ready" if service.ready else "not_ready",
            "models": {"llm": service.generator.name, "embedder": service.embedder.name},
            "index": {"documents": len(docs), "chunks": sum(d.chunks for d in docs)}}


@v1.get("/models")
def models(service: Service) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": service.generator.name, "object": "model", "created": 0,
                                        "owned_by": "local"}]}


@v1.post("/search", response_model=SearchResponse)
def search_route(body: SearchRequest, service: Service) -> SearchResponse:
    """Hybrid search; ``start``/``end`` index the original file, ``text`` is the clean passage."""
    hits = service.search(body.query, body.top_k, body.doc_ids)
    return SearchResponse(results=[SearchResult(doc_id=h.chunk.doc_id, chunk_id=h.chunk.chunk_id, start=h.chunk.start,
                                                end=h.chunk.end, section=h.chunk.section_path, text=h.chunk.text,
                                                score=h.score) for h in hits])


@v1.post("/chat/completions", response_model=None)
async def chat(body: ChatRequest, request: Request, service: Service) -> Any:
    """OpenAI Chat Completions, plus top-level ``citations`` and ``refused``."""
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    gate: Gate = request.app.state.gate
    gate.enter()
    try:
        stream = service.stream(messages, body.max_tokens, body.temperature)
        first = await run_in_threadpool(next, stream)  # errors surface here as JSON, before any SSE
    except BaseException:
        gate.leave()
        raise
    if body.stream:
        session = StreamSession(itertools.chain([first], stream), stream, service.generator.name, gate)
        return StreamingResponse(session.events, media_type="text/event-stream",
                                 background=BackgroundTask(session.close))
    try:
        answer = await run_in_threadpool(lambda: [i for i in stream if isinstance(i, Answer)][-1]
                                         if not isinstance(first, Answer) else first)
    finally:
        gate.leave()
    return {**_envelope("chat.completion", service.generator.name),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": "stop"}],
            "usage": _usage(answer), "citations": _citations(answer), "refused": answer.refused}


class StreamSession:
    """One streamed answer. ``close`` runs after the response, also when the client hangs up mid-stream:
    it stops the generation and frees the slot at once, without waiting for garbage collection."""

    def __init__(self, items: Iterator[str | Answer], source: Iterator[str | Answer], model: str,
                 gate: Gate) -> None:
        self._items, self._source, self._model, self._gate = items, source, model, gate
        self._released = False
        self._lock = threading.Lock()
        self.events = self._events()

    def _release(self) -> None:
        with self._lock:
            if not self._released:
                self._released = True
                self._gate.leave()

    def close(self) -> None:
        for gen in (self.events, self._source):
            while True:
                try:
                    gen.close()  # type: ignore[attr-defined]
                    break
                except ValueError:  # still running in a worker thread: it yields soon
                    time.sleep(0.02)
        self._release()

    def _events(self) -> Iterator[str]:
        head = _envelope("chat.completion.chunk", self._model)
        choice = lambda delta, finish=None: {**head, "choices": [{"index": 0, "delta": delta,  # noqa: E731
                                                                  "finish_reason": finish}]}
        streamed = False
        try:
            yield _sse(choice({"role": "assistant", "content": ""}))
            for item in self._items:
                if isinstance(item, Answer):
                    if item.refused and streamed:  # the evidence check overruled what was already sent
                        yield _sse(choice({"content": "\n\n" + item.text}))
                    elif not streamed:
                        yield _sse(choice({"content": item.text}))
                    final = choice({}, "stop")
                    yield _sse({**final, "citations": _citations(item), "refused": item.refused,
                                "usage": _usage(item)})
                else:
                    streamed = True
                    yield _sse(choice({"content": item}))
            yield "data: [DONE]\n\n"
        finally:
            self._release()


@v1.get("/documents", response_model=DocumentList)
def list_documents(service: Service) -> DocumentList:
    return DocumentList(data=[DocumentOut(id=d.doc_id, title=d.title, characters=d.characters, chunks=d.chunks,
                                          sha256=d.sha256, ingested_at=d.ingested_at) for d in service.documents()])


@v1.get("/documents/{doc_id:path}/text", response_model=DocumentText)
def document_text(doc_id: str, service: Service) -> DocumentText:
    """The text that citation and chunk offsets refer to, with the document's metadata."""
    d, text = service.document_text(doc_id)
    return DocumentText(id=d.doc_id, title=d.title, characters=d.characters, chunks=d.chunks, sha256=d.sha256,
                        ingested_at=d.ingested_at, text=text)


@v1.post("/documents", response_model=DocumentOut, status_code=201)
async def upload_document(service: Service, file: UploadFile = File(...)) -> DocumentOut:  # noqa: B008
    """Upload one ``.txt``/``.md`` file; it is indexed at once, no restart needed."""
    limit = service.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the upload is larger than the limit of {limit:,} bytes")
    if not file.filename:
        raise InvalidRequest("the upload has no file name")
    d = await run_in_threadpool(service.add_document, file.filename, data)
    return DocumentOut(id=d.doc_id, title=d.title, characters=d.characters, chunks=d.chunks, sha256=d.sha256,
                       ingested_at=d.ingested_at)


@v1.delete("/documents/{doc_id:path}")
def delete_document(doc_id: str, service: Service) -> dict[str, Any]:
    service.delete_document(doc_id)
    return {"id": doc_id, "object": "document", "deleted": True}
