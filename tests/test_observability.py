"""Metrics, request ids and logs, observed through the running app."""

import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.observability.metrics import observe_each
from tests.conftest import make_client
from tests.helpers import png_of, served_version


def _samples(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def digit_png(mnist_test_split) -> bytes:
    return png_of(mnist_test_split.images[0].numpy())  # a 7


def test_counters_move_by_exactly_the_requests_made(client, digit_png):
    before = _samples(client)
    for _ in range(3):
        assert client.post("/predict", files={"file": ("7.png", digit_png)}).status_code == 200
    after = _samples(client)
    route = {"route": "/predict", "method": "POST", "status": "200"}
    assert (
        _value(after, "mnist_http_requests_total", **route) - _value(before, "mnist_http_requests_total", **route) == 3
    )
    latency = {"route": "/predict", "status": "200"}
    assert (
        _value(after, "mnist_http_request_duration_seconds_count", **latency)
        - _value(before, "mnist_http_request_duration_seconds_count", **latency)
    ) == 3
    assert (
        _value(after, "mnist_predictions_total", model="mnist", version=served_version("mnist"), **{"class": "7"})
        - _value(before, "mnist_predictions_total", model="mnist", version=served_version("mnist"), **{"class": "7"})
        == 3
    )
    assert (
        _value(after, "mnist_inference_duration_seconds_count")
        - _value(before, "mnist_inference_duration_seconds_count")
        == 3
    )
    assert _value(after, "mnist_upload_bytes_sum") - _value(before, "mnist_upload_bytes_sum") == 3 * len(digit_png)
    # The /metrics request of `before` was counted once the response ended.
    metrics_route = {"route": "/metrics", "method": "GET", "status": "200"}
    assert (
        _value(after, "mnist_http_requests_total", **metrics_route)
        - _value(before, "mnist_http_requests_total", **metrics_route)
        == 1
    )
    assert _value(after, "mnist_http_requests_in_flight") == 1  # this /metrics request itself


def test_rejections_are_counted_by_reason(client):
    before = _samples(client)
    client.post("/predict", files={"file": ("doc.pdf", b"%PDF-1.4 nothing")})
    client.post("/predict", json={})
    after = _samples(client)
    rejected = "mnist_rejected_requests_total"
    assert (
        _value(after, rejected, reason="unsupported_media_type")
        - _value(before, rejected, reason="unsupported_media_type")
        == 2
    )


def test_a_413_and_a_401_move_their_counters():
    with make_client(max_upload_bytes=100, api_key="k") as limited:
        before = _samples(limited)
        headers = {"X-API-Key": "k"}
        response = limited.post("/predict", files={"file": ("big.png", b"\x89PNG" + b"\0" * 5000)}, headers=headers)
        assert response.status_code == 413
        assert limited.post("/predict", files={"file": ("a.png", b"x")}).status_code == 401
        after = _samples(limited)
    rejected = "mnist_rejected_requests_total"
    assert (
        _value(after, rejected, reason="payload_too_large") - _value(before, rejected, reason="payload_too_large") == 1
    )
    assert _value(after, rejected, reason="unauthorized") - _value(before, rejected, reason="unauthorized") == 1
    route = {"route": "/predict", "method": "POST", "status": "413"}
    assert (
        _value(after, "mnist_http_requests_total", **route) - _value(before, "mnist_http_requests_total", **route) == 1
    )


def test_model_info_names_each_served_version(client):
    for model in client.get("/models").json()["models"]:
        [version] = model["versions"]
        # The registry is the test process's: versions other tests served stay there at 0.
        info = {
            key: value
            for key, value in _samples(client).items()
            if key[0] == "mnist_model_info" and ("model", model["name"]) in key[1] and value == 1
        }
        # Versions 1 and 2 of a model hold the same classifier weights (2 adds a detector).
        [labels] = [dict(key[1]) for key in info if dict(key[1])["version"] == str(version["version"])]
        assert labels["sha256"] == version["weights_sha256"]
        assert labels["device"] == "cpu"


def test_request_id_round_trips_or_is_made_up(client):
    assert client.get("/healthz", headers={"X-Request-ID": "trace-42.a:b"}).headers["x-request-id"] == "trace-42.a:b"
    for insane in ("has space", "x" * 200, "semi;colon"):
        made_up = client.get("/healthz", headers={"X-Request-ID": insane}).headers["x-request-id"]
        assert made_up != insane
        assert len(made_up) == 32
        assert int(made_up, 16) >= 0
    first, second = (client.get("/healthz").headers["x-request-id"] for _ in range(2))
    assert first != second
    assert client.post("/predict", json={}).headers["x-request-id"]  # errors carry one too


def test_json_logs_parse_and_never_contain_the_api_key(capsys, digit_png):
    secret = "s3cret-key-value"
    with make_client(log_format="json", api_key=secret) as json_client:
        capsys.readouterr()
        json_client.post(
            "/predict", files={"file": ("7.png", digit_png)}, headers={"X-API-Key": secret, "X-Request-ID": "req-1"}
        )
        json_client.post(
            "/predict", files={"file": ("7.png", digit_png)}, headers={"Authorization": f"Bearer {secret}"}
        )
        json_client.post("/predict", files={"file": ("7.png", digit_png)}, headers={"X-API-Key": "wrong"})
    output = capsys.readouterr().err
    lines = [line for line in output.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]
    assert secret not in output
    access = [entry for entry in entries if entry["logger"] == "mnist.access"]
    assert [entry["status"] for entry in access] == [200, 200, 401]
    first = access[0]
    assert first["request_id"] == "req-1"
    assert first["method"] == "POST"
    assert first["path"] == "/predict"
    assert first["class"] == 7
    assert 0.9 < first["confidence"] <= 1.0
    assert first["latency_ms"] > 0


def test_startup_log_names_each_model_version_device_and_threads(capsys):
    with make_client() as started:
        started.get("/healthz")
    lines = capsys.readouterr().err.splitlines()
    for model in ("mnist", "mnist-reference"):
        version = served_version(model)
        [line] = [line for line in lines if f"serving {model} version {version} from " in line]
        assert f"models/{model}/{version}/model.pt" in line
        assert "sha256 " in line
        assert "test accuracy " in line
        assert line.endswith(" on cpu")
    assert len([line for line in lines if "with 1 torch thread(s)" in line]) == 1


def test_every_route_the_app_serves_has_its_own_label(client):
    for path in ("/openapi.json", "/docs", "/redoc", "/static/app.js", "/", "/v2/health/live", "/models"):
        assert client.get(path).status_code == 200, path
    client.get("/no/such/path")
    labels = {key[1] for key in _samples(client) if key[0] == "mnist_http_requests_total"}
    routes = {dict(label)["route"] for label in labels}
    assert {"/openapi.json", "/docs", "/redoc", "/static", "/", "/v2/health/live", "/models"} <= routes
    assert "<unmatched>" in routes  # only for the unknown path
    unmatched = [dict(label) for label in labels if dict(label)["route"] == "<unmatched>"]
    assert {label["status"] for label in unmatched} == {"404"}


def test_the_confidence_histogram_holds_each_prediction_served(client, mnist_test_split):
    digits = mnist_test_split.images[:40].numpy()
    files = [("files", (f"{n}.png", png_of(digit))) for n, digit in enumerate(digits)]
    labels = {"model": "mnist-reference", "version": served_version("mnist-reference")}
    before = _samples(client)
    predictions = client.post("/predict/batch", params={"model": "mnist-reference"}, files=files).json()["predictions"]
    after = _samples(client)
    confidences = np.array([prediction["confidence"] for prediction in predictions])

    def moved(name: str, **extra: str) -> float:
        return _value(after, name, **labels, **extra) - _value(before, name, **labels, **extra)

    assert moved("mnist_prediction_confidence_count") == len(digits)
    assert moved("mnist_prediction_confidence_sum") == pytest.approx(confidences.sum(), abs=1e-6)
    for bound in ("0.5", "0.8", "0.99", "+Inf"):
        assert moved("mnist_prediction_confidence_bucket", le=bound) == (confidences <= float(bound)).sum()


@pytest.mark.parametrize("count", [1, 16, 17, 2000])
def test_observe_each_counts_as_observe_does_one_value_at_a_time(count):
    """The bulk path (more than 16 values) puts each value in the bucket observe() would, bounds
    included, with the same count and sum."""
    bounds = (0.5, 0.6, 0.8, 0.99)
    pool = np.array([0.0, 0.3, 0.5, 0.55, 0.6, 0.8, 0.81, 0.99, 1.0], dtype=np.float32)  # as confidences are
    values = np.random.default_rng(count).choice(pool, size=count)
    registries = [CollectorRegistry(), CollectorRegistry()]
    one_by_one, at_once = (
        Histogram("confidence", "test", ["model"], buckets=bounds, registry=registry).labels("m")
        for registry in registries
    )
    for value in values.tolist():
        one_by_one.observe(value)
    observe_each(at_once, values)
    expected, found = (
        {sample.name + repr(sorted(sample.labels.items())): sample.value
         for family in text_string_to_metric_families(generate_latest(registry).decode())
         for sample in family.samples if not sample.name.endswith("_created")}
        for registry in registries
    )  # fmt: skip
    sums = [table.pop("confidence_sum[('model', 'm')]") for table in (expected, found)]
    assert found == expected
    assert sums[1] == pytest.approx(sums[0], rel=1e-6)
