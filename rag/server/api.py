"""HTTP routes: OpenAI-compatible chat completions, search, documents, health; the generation gate and the
stream session. The request and response bodies are in ``rag.server.schemas``."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as FormFile

from rag.errors import Busy, InvalidRequest, PayloadTooLarge, RagError
from rag.formats import needs_ocr, read_bytes
from rag.index.writer import IndexWriter, sanitize_name
from rag.ingest import limits
from rag.jobs import Job, JobQueue
from rag.server.schemas import (
    ChatRequest,
    CitationOut,
    DeletedOut,
    DocumentList,
    DocumentOut,
    DocumentText,
    ErrorOut,
    JobOut,
    SearchRequest,
    SearchResponse,
    SearchResult,
    document_out,
    job_out,
)
from rag.service import RagService
from rag.types import Answer, Citation


# --- the generation gate -----------------------------------------------------------------------------
class Gate:
    """Admits ``running`` generations plus ``queue_size`` waiting; past that, ``Busy`` (503)."""

    def __init__(self, queue_size: int, running: int = 1) -> None:
        self._limit = queue_size + running
        self._running = running
        self._count = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self._count >= self._limit:
                raise Busy(f"the model is busy and {self._limit - self._running} requests are already waiting; "
                           "retry shortly")
            self._count += 1

    def leave(self) -> None:
        with self._lock:
            self._count -= 1


# --- helpers -----------------------------------------------------------------------------------------
def get_service(request: Request) -> RagService:
    service: RagService = request.app.state.service
    return service


def get_writer(request: Request) -> IndexWriter:
    writer: IndexWriter = request.app.state.writer
    return writer


def get_jobs(request: Request) -> JobQueue:
    jobs: JobQueue = request.app.state.jobs
    return jobs


async def settle(job: Job, wait: float) -> Job:
    """Wait up to ``wait`` seconds for ``job`` without holding a thread."""
    deadline = time.monotonic() + wait
    pause = 0.005
    while not job.finished.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)
    return job


def accepted(job: Job) -> JSONResponse:
    """202: the write goes on in the background; poll ``Location``."""
    return JSONResponse(job_out(job).model_dump(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


def _answer_fields(answer: Answer) -> dict[str, Any]:
    """What a reply carries besides its text, the same in a whole response and in a stream's last chunk:
    ``citations``, ``refused``, the ``reason`` (the check that refused, or why the answer was cut), ``usage``,
    and ``context``, the sentences the model was shown (empty when it was not asked): with them a client
    can tell a passage the retrieval missed from one the model misread."""
    return {"citations": [CitationOut(**c.__dict__).model_dump(exclude_none=True) for c in answer.citations
                          if isinstance(c, Citation)],
            "refused": answer.refused, "reason": answer.reason, "usage": _usage(answer),
            "context": [CitationOut(doc_id=s.doc_id, start=s.start, end=s.end, text=s.text, section=s.section)
                        .model_dump(exclude_none=True) for s in answer.context]}


def _usage(answer: Answer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


def _envelope(kind: str, model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": kind, "created": int(time.time()), "model": model}


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


# --- routes ------------------------------------------------------------------------------------------
# Every route may answer with the error envelope; the API key and body limits are checked by the guard.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Bad request (invalid body, parameters or document name)"},
    "default": {"model": ErrorOut, "description": "An error: 401 key, 403 cross-site, 404, 413 too large, "
                "422 unreadable document, 503 busy or not ready (with Retry-After), 500 server fault"},
}
router = APIRouter(responses=ERRORS)
v1 = APIRouter(prefix="/v1", responses=ERRORS)
Service = Annotated[RagService, Depends(get_service)]
Writer = Annotated[IndexWriter, Depends(get_writer)]
Jobs = Annotated[JobQueue, Depends(get_jobs)]


@router.head("/health")
def health_head() -> Response:
    """The headers of ``GET /health`` (for `curl -I` and load balancers), no body."""
    return Response(status_code=200, media_type="application/json")


@router.get("/health")
def health(service: Service) -> dict[str, Any]:
    """Whether the service can answer, with the loaded model names and index counts."""
    index = service.index if service.ready else None  # counted by SQLite: reading every record took 27 ms at 100k
    problem = {"error": {"type": p.type, "message": str(p)}} if (p := service.problem) else {}
    return {"status": "ready" if index is not None else "not_ready",
            "models": {"llm": service.generator.name, "embedder": service.embedder.name, **_llm_check(service)},
            "index": {"documents": len(index.documents) if index else 0, "chunks": index.chunk_count() if index else 0},
            **problem}


def _llm_check(service: RagService) -> dict[str, Any]:
    """The local model's decode check (``rag.models.proof``), for the generator that ran one."""
    proof = getattr(service.generator, "proof", None)
    if proof is None:
        return {}
    from rag.models.proof import describe

    return {"llm_check": describe(proof)}


@v1.get("/models")
def models(service: Service) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": service.generator.name, "object": "model", "created": 0,
                                        "owned_by": "local"}]}


@v1.post("/search", response_model=SearchResponse)
def search_route(body: SearchRequest, request: Request, service: Service) -> SearchResponse:
    """Hybrid search; ``start``/``end`` index the original file, ``text`` is the clean passage."""
    with request.app.state.reads_first.reading():
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
        with request.app.state.reads_first.reading():  # retrieval and the prompt: the writer pauses
            first = await run_in_threadpool(next, stream)  # errors surface here as JSON, before any SSE
    except BaseException:
        gate.leave()
        raise
    if body.stream:
        session = StreamSession(itertools.chain([first], stream), stream, service.generator.name, gate)
        return StreamingResponse(session.events, media_type="text/event-stream",
                                 background=BackgroundTask(session.close))
    try:
        answer = await collect_unless_gone(request, first, stream)
    finally:
        gate.leave()
    if answer is None:
        return Response(status_code=499)  # the client hung up; nobody reads this
    return {**_envelope("chat.completion", service.generator.name),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": "stop"}],
            **_answer_fields(answer)}


async def collect_unless_gone(request: Request, first: str | Answer, stream: Iterator[str | Answer]) -> Answer | None:
    """The final ``Answer`` of ``stream``; ``None`` when the client hangs up first, in which case the
    generation is stopped at its next token and the model is free for the next request."""
    gone = threading.Event()

    def consume() -> Answer | None:
        item = first
        while not isinstance(item, Answer):
            if gone.is_set():
                stream.close()  # type: ignore[attr-defined]
                return None
            item = next(stream)
        return item

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        answer = await run_in_threadpool(consume)
        tasks.cancel_scope.cancel()
    return answer


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
                    if not streamed:  # a refusal: the service held back everything it would retract
                        yield _sse(choice({"content": item.text}))
                    final = choice({}, "stop")
                    yield _sse({**final, **_answer_fields(item)})
                elif item:  # empty strings are the service's ticks while the model writes: no text
                    streamed = True
                    yield _sse(choice({"content": item}))
            yield "data: [DONE]\n\n"
        except RagError as exc:  # e.g. the LLM server timed out after the first token: the envelope, as an event
            yield _sse({"error": {"type": exc.type, "message": str(exc)}})
        finally:
            self._release()


@v1.get("/documents", response_model=DocumentList)
def list_documents(service: Service) -> DocumentList:
    return DocumentList(data=[document_out(d) for d in service.documents()])


@v1.get("/documents/{doc_id:path}/text", response_model=DocumentText)
def document_text(doc_id: str, service: Service) -> DocumentText:
    """The text that citation and chunk offsets refer to, with the document's metadata."""
    d, text = service.document_text(doc_id)
    return DocumentText(**document_out(d).model_dump(), text=text, pages=list(d.pages))


@v1.post("/documents", response_model=DocumentOut, status_code=201,
         responses={202: {"model": JobOut, "description": "Still indexing: poll `Location` (/v1/jobs/{id})"}})
async def upload_document(request: Request, service: Service, writer: Writer, jobs: Jobs,
                          file: UploadFile = File(...)) -> Any:  # noqa: B008
    """Upload one ``.txt``, ``.md``, ``.html``/``.htm``, ``.docx``, ``.pdf`` or image (``.png``, ``.jpg``/``.jpeg``,
    ``.tif``/``.tiff``: read by OCR, as are PDF pages without a text layer) file. 201 with the document
    when indexed within `RAG_UPLOAD_WAIT_SECONDS`,
    else 202 with a job to poll; an error envelope when it fails."""
    files = [v for _, v in (await request.form()).multi_items() if isinstance(v, FormFile)]
    if len(files) > 1:
        raise InvalidRequest(f"send one file per upload; this one has {len(files)}: "
                             f"{', '.join(repr(f.filename) for f in files)}")
    limit = service.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the upload is larger than the limit of {limit:,} bytes")
    if not file.filename:
        raise InvalidRequest("the upload has no file name")
    name, settings = file.filename, service.settings
    if await run_in_threadpool(needs_ocr, data, name, limits(settings)):
        # OCR takes seconds a page: the job reads the file, one writer at a time, reporting pages read
        doc_id = sanitize_name(name)
        job = await settle(jobs.submit("upload", lambda job: writer.add(
            read_bytes(data, doc_id, limits(settings), progress=job.progress), data, job)),
            settings.upload_wait_seconds)
    else:
        doc = await run_in_threadpool(writer.prepare, name, data)
        job = await settle(jobs.submit("upload", lambda job: writer.add(doc, data, job)), settings.upload_wait_seconds)
    if job.status == "failed" and job.error is not None:
        raise job.error
    if job.status == "done":
        return JSONResponse(document_out(job.result).model_dump(), status_code=201)
    return accepted(job)


@v1.delete("/documents/{doc_id:path}", response_model=DeletedOut,
           responses={202: {"model": JobOut, "description": "Still removing: poll `Location` (/v1/jobs/{id})"}})
async def delete_document(doc_id: str, service: Service, writer: Writer, jobs: Jobs) -> Any:
    """Remove a document from the index and the corpus folder (200), or 202 with a job to poll."""
    job = await settle(jobs.submit("delete", lambda job: writer.delete(doc_id, job)),
                       service.settings.upload_wait_seconds)
    if job.status == "failed" and job.error is not None:
        raise job.error
    if job.status == "done":
        return DeletedOut(id=doc_id)
    return accepted(job)


@v1.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, jobs: Jobs) -> JobOut:
    """An upload or delete job: ``queued``, ``running`` (``progress``: chunks embedded), ``done`` or ``failed``."""
    return job_out(jobs.get(job_id))
