"""Application factory: ``create_app(settings)`` builds a FastAPI app; models load once, in ``lifespan``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rag import __version__
from rag.server.api import Gate, router, v1
from rag.config import Settings
from rag.errors import RagError
from rag.service import RagService, build_service

log = logging.getLogger(__name__)


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error envelope, as the OpenAI API shapes it."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def create_app(settings: Settings | None = None, service: RagService | None = None) -> FastAPI:
    """A new app; pass ``service`` to reuse already loaded models (tests), else they load at start-up."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = service or build_service(settings)
        _warm_up(app.state.service)
        yield

    app = FastAPI(title="rag", version=__version__, lifespan=lifespan,
                  description="Local, offline question answering over Chinese documents.")
    app.state.settings = settings
    app.state.gate = Gate(settings.queue_size)
    app.include_router(router)
    app.include_router(v1)
    _install_error_handlers(app)
    return app


def _warm_up(service: RagService) -> None:
    """Evaluate the fixed system prompt once so the first user does not pay for it."""
    try:
        chat = [{"role": "system", "content": service.templates.system}, {"role": "user", "content": "你好"}]
        with service.generation_lock:
            service.generator.generate(chat, 1, 0.0)
    except Exception:  # a failed warm-up must not stop the service; the first request will tell
        log.exception("warm-up failed")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def rag_error(_: Request, exc: RagError) -> JSONResponse:
        headers = {503: {"Retry-After": "5"}, 401: {"WWW-Authenticate": "Bearer"}}.get(exc.status_code)
        return error_response(exc.status_code, exc.type, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return error_response(400, "invalid_request_error", message)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, kind, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the server log")
