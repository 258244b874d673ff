"""Several uvicorn workers: metrics summed over all of them, and startup failure stops them all."""

import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import REPO_ROOT
from tests.system.serving import STARTUP_DEADLINE_SECONDS, start_service, stop_service, wait_until_ready

pytestmark = pytest.mark.system


def _start(**environment: str) -> tuple[subprocess.Popen, str]:
    return start_service(subprocess.PIPE, WORKERS="2", LOG_LEVEL="warning", **environment)


def _sample(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_metrics_count_requests_across_two_workers():
    process, url = _start()
    try:
        wait_until_ready(process, url)
        digit = (REPO_ROOT / "samples" / "7.png").read_bytes()

        def predict(_: int) -> int:
            return httpx.post(f"{url}/predict", files={"file": ("7.png", digit)}).status_code

        # Eight at a time on fresh connections, so both workers take a share.
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert list(pool.map(predict, range(40))) == [200] * 40
        metrics = httpx.get(f"{url}/metrics").text
        assert _sample(metrics, "mnist_http_requests_total", route="/predict", status="200") == 40
        assert _sample(metrics, "mnist_predictions_total", **{"class": "7"}) == 40
        # One model call per micro-batch: requests that arrive together share one.
        assert 1 <= _sample(metrics, "mnist_inference_duration_seconds_count") <= 40
        assert _sample(metrics, "mnist_model_info", model="mnist") == 1  # "max" across workers, not a sum
    finally:
        stop_service(process)


def test_a_worker_that_cannot_load_the_model_stops_the_server_with_an_error():
    process, _ = _start(MODEL_PATH="missing/weights.pt")
    output, _ = process.communicate(timeout=STARTUP_DEADLINE_SECONDS)
    assert process.returncode == 3
    assert "cannot start: missing/weights.pt: weights file not found" in output
    assert "Traceback" not in output
