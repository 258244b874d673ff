"""The optional API key and the safety of what the service reads."""

import pytest

from tests.conftest import make_client
from tests.helpers import REPO_ROOT

KEY = "correct horse battery staple"
_V2_REQUEST = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 784}]}


@pytest.fixture(scope="module")
def keyed_client():
    with make_client(api_key=KEY) as client:
        yield client


@pytest.fixture(scope="module")
def digit() -> bytes:
    with (REPO_ROOT / "samples" / "7.png").open("rb") as stream:
        return stream.read()


def _protected_requests(client, digit: bytes, headers: dict[str, str]):
    yield client.post("/predict", files={"file": ("7.png", digit)}, headers=headers)
    yield client.post("/predict/batch", files=[("files", ("7.png", digit))], headers=headers)
    yield client.get("/model", headers=headers)
    yield client.get("/models", headers=headers)
    yield client.get("/v2/models/mnist", headers=headers)
    yield client.get("/v2/models/mnist/ready", headers=headers)
    yield client.post("/v2/models/mnist/infer", json=_V2_REQUEST, headers=headers)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"X-API-Key": KEY[:-1]},
        {"Authorization": KEY},
    ],
    ids=["none", "wrong-header-key", "wrong-bearer", "basic-scheme", "prefix-of-key", "no-scheme"],
)
def test_protected_routes_refuse_without_the_key(keyed_client, digit, headers):
    for response in _protected_requests(keyed_client, digit, headers):
        assert response.status_code == 401
        body = response.json()
        message = body["error"] if response.url.path.startswith("/v2/") else body["detail"]
        assert message.startswith("missing or invalid API key")
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}], ids=["x-api-key", "bearer"]
)
def test_protected_routes_accept_the_key(keyed_client, digit, headers):
    for response in _protected_requests(keyed_client, digit, headers):
        assert response.status_code == 200


def test_health_and_readiness_stay_open(keyed_client):
    for path in ("/healthz", "/readyz", "/v2", "/v2/health/live", "/v2/health/ready"):
        assert keyed_client.get(path).status_code == 200, path


def test_without_a_key_configured_everything_is_open(client, digit):
    for response in _protected_requests(client, digit, {}):
        assert response.status_code == 200


def test_openapi_declares_both_schemes_for_the_authorize_button(keyed_client):
    schema = keyed_client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["BearerKey"]["description"],
    }
    assert schemes["ApiKeyHeader"]["in"] == "header"
    assert schemes["ApiKeyHeader"]["name"] == "X-API-Key"
    for path, method in (
        ("/predict", "post"),
        ("/predict/batch", "post"),
        ("/model", "get"),
        ("/models", "get"),
        ("/v2/models/{model_name}", "get"),
        ("/v2/models/{model_name}/infer", "post"),
    ):
        assert schema["paths"][path][method]["security"] == [{"BearerKey": []}, {"ApiKeyHeader": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_the_weights_path_cannot_come_from_a_request(keyed_client, digit):
    """Requests only choose among the versions loaded at startup or by a poll, by name and number."""
    schema = keyed_client.get("/openapi.json").json()
    parameters = {
        parameter["name"]
        for path in schema["paths"].values()
        for operation in path.values()
        for parameter in operation.get("parameters", [])
    }
    # show_input is a flag: it chooses what an answer holds, never a file.
    assert parameters == {
        "model",
        "version",
        "show_input",
        "model_name",
        "model_version",
        "Inference-Header-Content-Length",
    }
    headers = {"X-API-Key": KEY}
    for query in ("model=../mnist-reference", "model=/etc/passwd", "model=mnist&version=../../1", "version=-1"):
        response = keyed_client.post(f"/predict?{query}", files={"file": ("7.png", digit)}, headers=headers)
        assert response.status_code == 404, query
    response = keyed_client.get("/v2/models/..%2Fmnist", headers=headers)
    assert response.status_code == 404
