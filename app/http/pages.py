"""The pages for people: the drawing page at /, and the API docs at /docs and /redoc, all served offline.

FastAPI's default /docs and /redoc load Swagger UI and ReDoc from CDNs; here their files are
served by the app itself (app/static/vendor/swagger-ui and app/static/vendor/redoc, refreshed by
scripts/vendor-swagger-ui.sh and scripts/vendor-redoc.sh), so the docs work in a browser without
internet access too.
"""

import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_SWAGGER = "/static/vendor/swagger-ui"
_REDOC = "/static/vendor/redoc"
OPENAPI_URL = "/openapi.json"
# Where the API description says to send requests; each request for the document fills in the
# address it was sent to, so the docs show the port and host the service really runs on.
SERVER_PLACEHOLDER = "{server}"
_PLAIN_ORIGIN = re.compile(r"https?://[A-Za-z0-9.:\[\]-]{1,255}")
_DRAWING_PAGE = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

page_router = APIRouter(include_in_schema=False)


@page_router.get("/")
async def drawing_page(request: Request) -> HTMLResponse:
    # The page shrinks pictures over the upload limit before sending them, so it is told this
    # server's MAX_UPLOAD_BYTES, which no API endpoint reports.
    limit = request.app.state.settings.max_upload_bytes
    return HTMLResponse(_DRAWING_PAGE.replace("{{max_upload_bytes}}", str(limit)))


@page_router.get(OPENAPI_URL)
async def openapi_document(request: Request) -> JSONResponse:
    document = request.app.openapi()
    origin = str(request.base_url).rstrip("/")
    # The Host header is the client's to write: only a plain host and port go into the page.
    server = origin if _PLAIN_ORIGIN.fullmatch(origin) else "http://HOST:PORT"
    info = {**document["info"], "description": document["info"]["description"].replace(SERVER_PLACEHOLDER, server)}
    return JSONResponse({**document, "info": info})


@page_router.get("/docs")
async def docs_page(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{request.app.title} - API documentation",
        swagger_js_url=f"{_SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{_SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{_SWAGGER}/favicon-32x32.png",
    )


@page_router.get("/redoc")
async def redoc_page(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=OPENAPI_URL,
        title=f"{request.app.title} - API reference",
        redoc_js_url=f"{_REDOC}/redoc.standalone.js",
        redoc_favicon_url="/static/favicon.svg",
        with_google_fonts=False,  # ReDoc falls back to the system's fonts
    )
