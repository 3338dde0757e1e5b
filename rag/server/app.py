"""Application factory: ``create_app(settings)`` builds a FastAPI app; models load once, in ``lifespan``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from rag import __version__
from rag.config import Settings
from rag.errors import RagError
from rag.index.writer import IndexWriter
from rag.jobs import JobQueue, ReadsFirst
from rag.parts import Parts
from rag.server.api import Gate, router, v1
from rag.server.guard import Guard, error_response, rag_error_response
from rag.server.page import mount_page
from rag.service import RagService, build_service

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, parts: Parts | None = None, *,
               service: RagService | None = None) -> FastAPI:
    """A new app. Its models load at start-up, built by ``parts`` (default: those the settings name; tests
    hand in fakes); pass ``service`` to reuse already loaded ones (tests)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The service serves the index; the writer changes it and hands each new one to the service.
        app.state.service = live = service or build_service(settings, parts)
        app.state.writer = writer = IndexWriter(settings, live.embedder, live,
                                                between_batches=app.state.reads_first.pause)
        writer.refresh()  # settle a write a crash interrupted, catch up with `rag ingest`
        # Index writes run on one worker thread, never on the request threads that reads need.
        app.state.jobs = JobQueue(settings.upload_queue_size, idle=writer.refresh)
        app.state.jobs.start()
        _warm_up(live)
        try:
            yield
        finally:
            app.state.jobs.stop()

    app = FastAPI(title="rag", version=__version__, lifespan=lifespan,
                  description="Local, offline question answering over Chinese documents.")
    app.state.settings = settings
    app.state.gate = Gate(settings.queue_size, settings.parallel_generations)
    app.state.reads_first = ReadsFirst()
    app.include_router(router)
    app.include_router(v1)
    mount_page(app)
    _install_error_handlers(app)
    app.add_middleware(Guard, settings=settings)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The schema, saying what the service does: invalid requests get 400 with the error envelope,
    where FastAPI's default schema promises 422."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
        schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
        app.openapi_schema = schema
    return app.openapi_schema


def _warm_up(service: RagService) -> None:
    """Evaluate the fixed system prompt once, and run retrieval and the evidence checks once (loading the
    word segmenter's dictionary), so the first user does not pay for either."""
    try:
        chat = [{"role": "system", "content": service.templates.system}, {"role": "user", "content": "你好"}]
        with service.generation_lock:
            service.generator.generate(chat, 1, 0.0)
        if service.ready:
            service.prepare([{"role": "user", "content": "教育局局长是谁？"}])
    except Exception:  # a failed warm-up must not stop the service; the first request will tell
        log.exception("warm-up failed")


def _allowed_methods(request: Request) -> list[str]:
    """The methods of the path template that routing picks for the request's path (the first that matches:
    ``/v1/documents/x/text`` is the text route's, not the delete route's ``{doc_id:path}``)."""
    routes = [r for r in (*router.routes, *v1.routes) if isinstance(r, BaseRoute)]
    matching = [r for r in routes if r.matches({**request.scope, "method": ""})[0] != Match.NONE]
    if not matching:
        return []
    template = getattr(matching[0], "path", None)
    return sorted({m for r in routes if getattr(r, "path", None) == template for m in getattr(r, "methods", ())})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def rag_error(_: Request, exc: RagError) -> JSONResponse:
        return rag_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return error_response(400, "invalid_request_error", message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first route's methods; a path may have several
            headers["Allow"] = ", ".join(_allowed_methods(request)) or headers.get("Allow", "")
        return error_response(exc.status_code, kind, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the server log")
