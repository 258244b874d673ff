"""The pages for people: the drawing page at / and the API docs at /docs, both served offline.

FastAPI's default /docs loads Swagger UI from a CDN; here its files are served by the app
itself (app/static/vendor/swagger-ui, refreshed by scripts/vendor-swagger-ui.sh), so the docs
work in a browser without internet access too.
"""

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_SWAGGER = "/static/vendor/swagger-ui"

page_router = APIRouter(include_in_schema=False)


@page_router.get("/")
async def drawing_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


@page_router.get("/docs")
async def docs_page(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - API documentation",
        swagger_js_url=f"{_SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{_SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{_SWAGGER}/favicon-32x32.png",
    )
