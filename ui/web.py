"""The chat page's routes: ``GET /`` and ``/static/*``, added to the app only when ``DEV_UI`` is on.

The page is three static files (``ui/static``), no build step and nothing fetched from elsewhere: its
Content-Security-Policy lets it load and call only this server, so it works without a network. A
deployed runtime leaves ``DEV_UI`` unset and serves only ``/invocations`` and ``/ping``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: the name of the page's route, so ``mount_dev_ui`` can tell it has already run
INDEX_ROUTE = "dev-ui"
#: same origin only: the page calls ``/invocations`` and loads its own files, nothing from any other host
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # an edited page is what the next reload gets
}


class PageFiles(StaticFiles):
    """``StaticFiles`` whose answers carry the page's headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(HEADERS)
        return response


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers=HEADERS)


def dev_ui_routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET", "HEAD"], name=INDEX_ROUTE),
        Mount("/static", app=PageFiles(directory=STATIC_DIR), name="dev-ui-static"),
    ]


def page_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the page (a wildcard bind address is not one to open)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def mount_dev_ui(app: Starlette) -> None:
    """Serve the chat page from ``app`` (once, however often it is called)."""
    if not any(getattr(route, "name", None) == INDEX_ROUTE for route in app.router.routes):
        app.router.routes.extend(dev_ui_routes())
