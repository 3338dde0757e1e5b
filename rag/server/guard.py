"""The guard at the edge, before any route and before a body is read: the ``Host`` allow-list (against DNS
rebinding), same-origin writes (no web page elsewhere may POST or DELETE), the API key, and body limits.

A request refused here costs no parsing and no memory: its body is never read. A request let through has
its body read once, bounded, and replayed to the app.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.config import Settings
from rag.errors import Forbidden, InvalidRequest, PayloadTooLarge, RagError, Unauthorized

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around an upload's bytes
_HEADERS_BY_STATUS = {503: {"Retry-After": "5"}, 401: {"WWW-Authenticate": "Bearer"}}
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error envelope, as the OpenAI API shapes it."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def rag_error_response(exc: RagError) -> JSONResponse:
    return error_response(exc.status_code, exc.type, str(exc), _HEADERS_BY_STATUS.get(exc.status_code))


def _names(csv: str) -> frozenset[str]:
    return frozenset(n.strip().lower().strip("[]") for n in csv.split(",") if n.strip())


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without port or IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _netloc(url_or_host: str, scheme: str) -> str:
    """``host:port`` with the scheme's default port made explicit, for comparing origins."""
    parts = urlsplit(url_or_host if "://" in url_or_host else f"{scheme}://{url_or_host}")
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{(parts.hostname or '').lower()}:{port}"


class Guard:
    """ASGI middleware: refuses with the error envelope, or passes the request on with its body bounded."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        hosts = _names(settings.allowed_hosts)
        self.hosts = None if "*" in hosts else hosts | ({settings.host.lower().strip("[]")} - _WILDCARD_BINDS)
        origins = _names(settings.allowed_origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/") for o in origins)
        self.key = settings.api_key
        self.body_limit = settings.max_body_bytes
        self.upload_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            self.check_host(headers)
            if scope["method"] in UNSAFE_METHODS:
                self.check_origin(scope, headers)
            if scope["path"] == "/v1" or scope["path"].startswith("/v1/"):
                self.check_key(headers)
            replay = await self.read_body(scope, receive, headers)
        except RagError as exc:
            await rag_error_response(exc)(scope, receive, send)
            return
        if replay is not None:
            await self.app(scope, replay, send)

    def check_host(self, headers: Headers) -> None:
        if self.hosts is None:
            return
        name = host_name(headers.get("host", ""))
        if name not in self.hosts:
            raise InvalidRequest(f"Host {name!r} is not served here (allowed: {', '.join(sorted(self.hosts))}); "
                                 "set RAG_ALLOWED_HOSTS to serve it")

    def check_origin(self, scope: Scope, headers: Headers) -> None:
        """Browsers name the page that sends a request (``Origin``, ``Sec-Fetch-Site``); other clients
        send neither and pass."""
        origin = headers.get("origin")
        site = headers.get("sec-fetch-site")
        if self.any_origin or (origin is None and site is None):
            return
        if origin is not None and origin != "null":
            own = _netloc(headers.get("host", ""), scope.get("scheme", "http"))
            if origin.rstrip("/").lower() in self.origins or _netloc(origin, "http") == own:
                return
        elif site in ("same-origin", "none"):
            return
        raise Forbidden(f"{scope['method']} from another site ({origin or site}) is refused: this service accepts "
                        "changes only from its own page and from non-browser clients (RAG_ALLOWED_ORIGINS)")

    def check_key(self, headers: Headers) -> None:
        """``Authorization: Bearer <key>``; the scheme is case-insensitive (RFC 7235)."""
        if not self.key:
            return
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.key.encode()):
            raise Unauthorized()

    async def read_body(self, scope: Scope, receive: Receive, headers: Headers) -> Receive | None:
        """Read the body up to its route's limit (413 past it, before reading more); ``None`` when the
        client left. Returns a ``receive`` that replays the body, then passes on (disconnects)."""
        upload = scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/documents"
        limit = self.upload_limit if upload else self.body_limit
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(self._too_large(upload, limit))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                raise PayloadTooLarge(self._too_large(upload, limit))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    def _too_large(self, upload: bool, limit: int) -> str:
        if upload:
            return (f"the upload is larger than the limit of {limit - MULTIPART_OVERHEAD:,} bytes "
                    "(RAG_MAX_UPLOAD_BYTES)")
        return f"the request body is larger than the limit of {limit:,} bytes (RAG_MAX_BODY_BYTES)"
