"""The chat page: ``GET /`` serves ``static/index.html``, ``/static/`` its stylesheet and JavaScript modules.

The page is plain files (no build step). Its Content-Security-Policy allows nothing but the server's own
origin, so the page cannot load or send anything elsewhere even by mistake.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> FileResponse:
    """The chat page."""
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


def mount_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/static/``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
