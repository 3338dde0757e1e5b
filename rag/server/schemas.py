"""HTTP schemas: the request and response bodies of the API, each field described (the OpenAPI page at
``/docs`` shows these descriptions).

Pydantic lives here only, at the edge; inside, the frozen dataclasses of ``rag.types`` carry the data.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.errors import InvalidRequest
from rag.index import DocRecord
from rag.jobs import Job
from rag.service import ROLES

_ROLE_NAMES: list[Any] = sorted(ROLES)  # JSON schema values


# --- requests ----------------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    """One turn of the conversation."""

    model_config = ConfigDict(extra="ignore")
    role: str = Field(..., json_schema_extra={"enum": _ROLE_NAMES},  # checked (naming the value) by the service
                      description="Who speaks: `user` (a question), `assistant` (an earlier answer) or `system` "
                      "(ignored: the service's own system prompt is fixed).")
    content: str | list[dict[str, Any]] = Field(
        "", description="The text, or OpenAI content parts of which the `text` parts are joined.")

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        texts = [part.get("text") for part in self.content if part.get("type") == "text"]
        if not all(isinstance(t, str) for t in texts):  # a JSON object is data, not a question to answer
            raise InvalidRequest("a text content part must carry its text as a string")
        return "".join(texts)  # type: ignore[arg-type]

    @field_validator("content")
    @classmethod
    def _no_lone_surrogates(cls, content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        """JSON can spell a lone UTF-16 surrogate (``"\\udc00"``); it is no character, so no text to answer."""
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"contains a lone surrogate U+{ord(text[exc.start]):04X} at {exc.start}: "
                             "not valid Unicode text") from None
        return content


class ChatRequest(BaseModel):
    """An OpenAI Chat Completions request; the last message is the question, earlier turns resolve a follow-up."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, description="Accepted for compatibility and ignored: the service answers "
                              "with the model it loaded (`GET /v1/models`).")
    messages: list[ChatMessage] = Field(..., min_length=1, description="The conversation, oldest first; the "
                                        "last must be a non-empty user message.")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature; default "
                                      "`RAG_TEMPERATURE` (0: the same answer every time).")
    max_tokens: int | None = Field(None, ge=1, le=2048, description="Longest answer, in tokens; default "
                                   "`RAG_MAX_TOKENS`.")
    stream: bool = Field(False, description="Send `chat.completion.chunk` events (server-sent events), the "
                         "last carrying `citations`, `refused`, `reason` and `context`, then `data: [DONE]`.")


class SearchRequest(BaseModel):
    """A hybrid (dense + BM25) search over the indexed passages."""

    query: str = Field(..., min_length=1, description="What to look for, in Simplified or Traditional script.")
    top_k: int = Field(5, ge=1, le=100, description="How many passages to return, best first.")
    doc_ids: list[str] | None = Field(None, description="Only passages of these documents (ids as listed by "
                                      "`GET /v1/documents`); all documents when absent.")


# --- responses ---------------------------------------------------------------------------------------
class CitationOut(BaseModel):
    """A span of a document: a cited sentence, or a sentence the model was shown."""

    doc_id: str = Field(..., description="The document's id (its file name in the corpus folder).")
    start: int = Field(..., description="Offset of the span's first character in the document's text "
                       "(`GET /v1/documents/{doc_id}/text`), in code points.")
    end: int = Field(..., description="Offset just past the span's last character, in code points.")
    text: str = Field(..., description="The span's text, cleaned (scraped pinyin and page junk removed).")
    section: str = Field(..., description="The section path of the span, headings joined by ` > `.")
    page: int | None = Field(None, description="PDF only: 1-based page where the span starts")
    page_end: int | None = Field(None, description="PDF only: the last page, when the span crosses a page")


class SearchResult(BaseModel):
    """One passage found."""

    doc_id: str = Field(..., description="The document's id (its file name in the corpus folder).")
    chunk_id: str = Field(..., description="The passage's id, derived from its content.")
    start: int = Field(..., description="Offset of the passage's first character in the document's text.")
    end: int = Field(..., description="Offset just past the passage's last character.")
    section: str = Field(..., description="The section path of the passage, headings joined by ` > `.")
    text: str = Field(..., description="The passage, cleaned.")
    score: float = Field(..., description="The fused score that ranked it (higher is better).")


class SearchResponse(BaseModel):
    results: list[SearchResult] = Field(..., description="The passages found, best first.")


class DocumentOut(BaseModel):
    """An indexed document."""

    id: str = Field(..., description="The document's id: its file name in the corpus folder.")
    title: str = Field(..., description="The document's title: its leading title lines.")
    characters: int = Field(..., description="Length of the document's text, in characters.")
    chunks: int = Field(..., description="Passages the document was split into.")
    sha256: str = Field(..., description="SHA-256 of the file's bytes.")
    ingested_at: str = Field(..., description="When it was indexed (ISO 8601, UTC, seconds).")


class DocumentText(DocumentOut):
    """A document's text: the characters that ``start``/``end`` of chunks and citations index."""

    object: Literal["document.text"] = Field("document.text", description="Always `document.text`.")
    text: str = Field(..., description="The document's extracted text, which offsets index.")
    pages: list[int] = Field(default_factory=list, description="PDF only: offset in text where each page starts")


class DocumentList(BaseModel):
    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[DocumentOut] = Field(..., description="Every indexed document.")


class DeletedOut(BaseModel):
    id: str = Field(..., description="The removed document's id.")
    object: Literal["document"] = Field("document", description="Always `document`.")
    deleted: bool = Field(True, description="Always true: the document is gone from the index and the folder.")


class ErrorBody(BaseModel):
    type: str = Field(..., description="The kind of error, e.g. `invalid_request_error`, `document_error`, "
                      "`server_busy`, `index_outdated`.")
    message: str = Field(..., description="What went wrong, naming the bad value.")


class ErrorOut(BaseModel):
    """The one error envelope."""

    error: ErrorBody = Field(..., description="The error.")


class ProgressOut(BaseModel):
    done: int = Field(..., description="Chunks embedded so far.")
    total: int = Field(..., description="Chunks to embed (0 until the document is split).")


class JobOut(BaseModel):
    """An upload or delete running in the background: ``progress`` counts pages read by OCR (a scan or an
    image), then chunks embedded."""

    id: str = Field(..., description="The job's id (`GET /v1/jobs/{id}`).")
    status: Literal["queued", "running", "done", "failed"] = Field(..., description="Where the job is.")
    progress: ProgressOut = Field(..., description="Pages read by OCR of the scan's total (an image, or PDF "
                                  "pages without a text layer), then chunks embedded of the document's total.")
    document: DocumentOut | None = Field(..., description="The indexed document, once an upload is done.")
    error: ErrorBody | None = Field(..., description="Why the job failed, once it has.")


def document_out(d: DocRecord) -> DocumentOut:
    return DocumentOut(id=d.doc_id, title=d.title, characters=d.characters, chunks=d.chunks, sha256=d.sha256,
                       ingested_at=d.ingested_at)


def job_out(job: Job) -> JobOut:
    error = ErrorBody(type=job.error.type, message=str(job.error)) if job.error is not None else None
    document = document_out(job.result) if isinstance(job.result, DocRecord) else None
    return JobOut(id=job.id, status=job.status, progress=ProgressOut(done=job.done, total=job.total),
                  document=document, error=error)
