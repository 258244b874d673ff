"""Prometheus metrics, correct with several workers through prometheus-client's multiprocess mode.

`python -m app` sets PROMETHEUS_MULTIPROC_DIR before starting more than one worker; each worker
then writes its values to files there and `/metrics` sums them over all workers.
"""

import os
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

if TYPE_CHECKING:
    from app.inference.classifier import ModelInfo

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_INFERENCE_BUCKETS = (0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1)
_UPLOAD_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)

REQUESTS = Counter(
    "mnist_http_requests_total", "HTTP requests answered, by route, method and status", ["route", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "mnist_http_request_duration_seconds",
    "Time from request start to the end of the response, by route and status",
    ["route", "status"],
    buckets=_LATENCY_BUCKETS,
)
GRPC_REQUESTS = Counter(
    "mnist_grpc_requests_total", "Open Inference Protocol gRPC calls answered, by method and code", ["method", "code"]
)
GRPC_REQUEST_SECONDS = Histogram(
    "mnist_grpc_request_duration_seconds",
    "Time from a gRPC call's arrival to its answer, by method and code",
    ["method", "code"],
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("mnist_http_requests_in_flight", "HTTP requests being handled now", multiprocess_mode="livesum")
INFERENCE_SECONDS = Histogram(
    "mnist_inference_duration_seconds",
    "Time of one model call (contract steps, forward pass, softmax), for one micro-batch of requests",
    buckets=_INFERENCE_BUCKETS,
)
PREDICTIONS = Counter(
    "mnist_predictions_total", "Digits predicted, by model, version and predicted class", ["model", "version", "class"]
)
# Bounds around UNSURE_BELOW's range, so a dashboard sees how many answers fall under it.
CONFIDENCE = Histogram(
    "mnist_prediction_confidence",
    "The predicted class's probability, for each prediction served, by model and version",
    ["model", "version"],
    buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999),
)
VERDICTS = Counter(
    "mnist_prediction_verdicts_total",
    "Predictions answered not_a_digit (the version's detector) or unsure (UNSURE_BELOW), by model and version",
    ["model", "version", "verdict"],
)
UPLOAD_BYTES = Histogram("mnist_upload_bytes", "Size of each uploaded image file in bytes", buckets=_UPLOAD_BUCKETS)
REJECTED = Counter("mnist_rejected_requests_total", "Requests refused with a 4xx or 503, by reason", ["reason"])
MODEL_INFO = Gauge(
    "mnist_model_info",
    "1 for each model version served now, 0 once it is replaced or removed; the facts are in the labels",
    ["model", "version", "sha256", "device", "torch_version", "architecture"],
    multiprocess_mode="livemax",
)
MODEL_LOADS = Counter(
    "mnist_model_loads_total",
    "Model versions read from the repository, by outcome (loaded, refused)",
    ["model", "outcome"],
)


def model_served(info: "ModelInfo", serving: bool) -> None:
    """Mark a version as served (1) or no longer served (0) in mnist_model_info."""
    MODEL_INFO.labels(
        info.name, str(info.version), info.sha256, info.device, info.torch_version, info.network.layers
    ).set(1 if serving else 0)


def prediction_counters(info: "ModelInfo") -> list[Any]:
    """mnist_predictions_total's series for one version, one per class, created before the first hit.

    Creating them up front keeps a rate over any class defined from the start, and a request
    then only increments (labels() takes a lock and builds a tuple each call).
    """
    return [PREDICTIONS.labels(info.name, str(info.version), str(digit)) for digit in range(10)]


def confidence_histogram(info: "ModelInfo") -> Any:
    """mnist_prediction_confidence's series for one version, made once, as prediction_counters are."""
    return CONFIDENCE.labels(info.name, str(info.version))


def verdict_counters(info: "ModelInfo", verdicts: tuple[str, ...]) -> dict[str, Any]:
    """mnist_prediction_verdicts_total's series for one version, one per verdict counted, made once."""
    return {verdict: VERDICTS.labels(info.name, str(info.version), verdict) for verdict in verdicts}


# Up to this many values, observe() each; beyond, one update per bucket. prometheus-client observes
# one value per call, and a request of thousands of rows would hold the event loop for milliseconds.
_OBSERVED_ONE_BY_ONE = 16


def observe_each(histogram: Any, values: np.ndarray) -> None:
    """histogram.observe(value) for each of `values` (1-D), with the same buckets, count and sum."""
    if len(values) <= _OBSERVED_ONE_BY_ONE:
        for value in values.tolist():
            histogram.observe(value)
        return
    # observe()'s own rule, for all values at once: each falls in the first bucket whose upper bound
    # it does not exceed (the last bound is +Inf). The buckets hold counts per bucket, not
    # cumulative ones; tests/test_observability.py checks this against observe().
    histogram._raise_if_not_observable()
    buckets = np.searchsorted(np.asarray(histogram._upper_bounds), values, side="left")
    histogram._sum.inc(float(values.astype(np.float64).sum()))
    counts = np.bincount(buckets, minlength=len(histogram._buckets)).tolist()
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of all workers in multiprocess mode."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_exited() -> None:
    """Drop this worker's live gauges from the shared files when it stops."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(os.getpid())
