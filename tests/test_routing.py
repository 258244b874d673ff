"""Routes that read a body are declared once (app/http/routing.py): what cannot be served as declared
cannot be declared, and what is declared is what the front serves and what the documents say."""

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient

from app.http.front import ServiceFront
from app.http.limits import BodyRule
from app.http.routing import RequestBody, RouteDeclarationError, post_with_body
from app.http.security import require_api_key
from app.settings import Settings

KEY = "routing-test-key"
ECHO_BODY = RequestBody(
    {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string"}}}},
    lambda settings: BodyRule(settings.max_batch_bytes, "MAX_BATCH_BYTES"),
)


def front_for(router: APIRouter, settings: Settings, keyed: bool = False) -> ServiceFront:
    app = FastAPI()
    app.state.settings = settings
    app.include_router(router, dependencies=[Depends(require_api_key)] if keyed else None)
    return ServiceFront(app, settings)


def echo_router() -> APIRouter:
    router = APIRouter()

    @post_with_body(router.post, "/echo/{name}", ECHO_BODY, summary="Echo")
    async def echo(
        request: Request,
        name: str,
        times: Annotated[int, Query(ge=1)] = 1,
        x_tag: Annotated[str | None, Header()] = None,
    ) -> Response:
        body = await request.body()
        return Response(f"{name} {times} {x_tag} {len(body)}".encode())

    return router


def test_a_route_that_reads_a_body_without_a_rule_cannot_be_declared():
    router = APIRouter()

    @router.post("/upload")
    async def upload(request: Request) -> Response:
        return Response(await request.body())

    with pytest.raises(RouteDeclarationError, match="POST /upload reads a body but declares no rule for it"):
        front_for(router, Settings())


def test_a_body_route_that_depends_on_what_the_front_does_not_give_cannot_be_declared():
    router = APIRouter()

    async def current_user() -> str:
        return "someone"

    @post_with_body(router.post, "/upload", ECHO_BODY)
    async def upload(request: Request, user: Annotated[str, Depends(current_user)]) -> Response:
        return Response(user)

    with pytest.raises(RouteDeclarationError, match="it asks for the dependency current_user"):
        front_for(router, Settings())


def test_a_body_route_with_a_parameter_the_front_does_not_read_as_fastapi_does_cannot_be_declared():
    router = APIRouter()

    @post_with_body(router.post, "/upload", ECHO_BODY)
    async def upload(request: Request, tags: Annotated[list[str], Query()]) -> Response:
        return Response(",".join(tags))

    with pytest.raises(RouteDeclarationError, match="its query parameter 'tags' must be a single value"):
        front_for(router, Settings())


def test_a_keyed_body_route_is_checked_by_the_front():
    with TestClient(front_for(echo_router(), Settings(api_key=KEY), keyed=True)) as client:
        refused = client.post("/echo/a", content=b"xyz")
        allowed = client.post("/echo/a", content=b"xyz", headers={"X-API-Key": KEY})
        bearer = client.post("/echo/a", content=b"xyz", headers={"Authorization": f"Bearer {KEY}"})
    assert refused.status_code == 401
    assert refused.json()["detail"].startswith("missing or invalid API key")
    assert (allowed.status_code, allowed.text) == (200, "a 1 None 3")
    assert bearer.status_code == 200


def test_the_front_reads_parameters_as_declared_and_validates_them_as_fastapi_does():
    with TestClient(front_for(echo_router(), Settings())) as client:
        answer = client.post("/echo/b?times=3", content=b"12345", headers={"X-Tag": "t"})
        invalid = client.post("/echo/b?times=0", content=b"")
    assert (answer.status_code, answer.text) == (200, "b 3 t 5")
    assert invalid.status_code == 422
    assert invalid.json()["detail"] == "query.times: Input should be greater than or equal to 1"


def test_a_missing_required_parameter_gets_fastapis_error():
    router = APIRouter()

    @post_with_body(router.post, "/upload", ECHO_BODY)
    async def upload(request: Request, label: Annotated[str, Query()]) -> Response:
        return Response(label)

    with TestClient(front_for(router, Settings())) as client:
        missing = client.post("/upload", content=b"")
        given = client.post("/upload?label=x", content=b"")
    assert (missing.status_code, missing.json()["detail"]) == (422, "query.label: Field required")
    assert (given.status_code, given.text) == (200, "x")


def test_the_body_rule_declared_is_the_one_enforced():
    with TestClient(front_for(echo_router(), Settings(max_batch_bytes=4))) as client:
        answer = client.post("/echo/c", content=b"12345")
    assert answer.status_code == 413
    assert "raise MAX_BATCH_BYTES" in answer.json()["detail"]


def test_the_document_is_made_from_the_same_declaration():
    operation = front_for(echo_router(), Settings(), keyed=True).app.openapi()["paths"]["/echo/{name}"]["post"]
    assert operation["requestBody"] == ECHO_BODY.openapi
    assert [(parameter["name"], parameter["in"]) for parameter in operation["parameters"]] == [
        ("name", "path"),
        ("times", "query"),
        ("x-tag", "header"),
    ]
    assert operation["security"] == [{"BearerKey": []}, {"ApiKeyHeader": []}]
