"""Typed errors. Each class's docstring is what a user reads; the HTTP layer maps them to one envelope."""

from __future__ import annotations


class RagError(Exception):
    """Something went wrong."""

    status_code = 500
    type = "internal_error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidRequest(RagError):
    """The request is malformed."""

    status_code = 400
    type = "invalid_request_error"


class Unauthorized(RagError):
    """A valid API key is required: send `Authorization: Bearer <key>`."""

    status_code = 401
    type = "authentication_error"


class Forbidden(RagError):
    """This request is not allowed from where it came (another site, or an unknown Host)."""

    status_code = 403
    type = "permission_error"


class NotFound(RagError):
    """No such resource."""

    status_code = 404
    type = "not_found_error"


class PayloadTooLarge(RagError):
    """The upload is larger than the configured limit."""

    status_code = 413
    type = "invalid_request_error"


class Busy(RagError):
    """The model is busy and the wait queue is full; retry shortly."""

    status_code = 503
    type = "server_busy"


class IndexLocked(RagError):
    """Another process is writing the index; retry when it has finished."""

    status_code = 503
    type = "index_locked"


class NotReady(RagError):
    """The service is not ready: the index or the models are not loaded."""

    status_code = 503
    type = "not_ready"


class LLMUnavailable(RagError):
    """The language model server cannot be reached or is overloaded; retry shortly."""

    status_code = 503
    type = "llm_unavailable"


class LLMTimeout(RagError):
    """The language model server did not answer in time."""

    status_code = 504
    type = "llm_timeout"


class LLMError(RagError):
    """The language model server answered with an error or broke off."""

    status_code = 502
    type = "llm_error"


class DocumentError(RagError):
    """A document could not be read (undecodable, empty or binary)."""

    status_code = 422
    type = "document_error"


class StorageError(RagError):
    """A document or the index could not be written; nothing was changed."""

    status_code = 500
    type = "storage_error"


class IndexMismatch(RagError):
    """The index was built with another embedding model; re-ingest with `rag ingest --rebuild`."""

    status_code = 500
    type = "index_mismatch"


class IndexOutdated(IndexMismatch):
    """The index was written by another version of rag; rebuild it with `rag ingest --rebuild`."""

    status_code = 503
    type = "index_outdated"


class ModelProvisionError(RagError):
    """A model could not be provisioned."""

    status_code = 500
    type = "model_error"


class ModelCrashError(ModelProvisionError):
    """llama.cpp crashed while decoding the model on this CPU; rebuild it with `make rebuild-llama`."""
