"""Serving benchmark (`make bench`): the real service against a bare endpoint of the same server, in one run.

- /predict (`python -m app`, production settings: access log and metrics on) against the bare app
  (bench/bare_app.py: the same production server and settings, FastAPI reading the same upload
  and answering constant JSON), for 1 and 2 workers;
- the cost of the production settings: /predict against the same service with LOG_LEVEL=warning
  (no access log);
- batches of 64 digits: /predict/batch with 64 PNGs, and V2 infer with FP32 [64, 784] in Triton's
  binary tensor format, in images per second against single /predict;
- the CNN (mnist-cnn) on the same server: single /predict against the default model's, and V2
  infer with 64 rows;
- time from process start to the first right answer, and peak memory per worker.

wrk -t1 -c8 loads one server at a time, in turns A B A B ..., so drift on a shared machine weighs
on every side; each run also records the CPU the server's process tree used. Results go to
bench/results.json.
"""

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    BENCHMARKED_MODEL,
    REPO,
    WORK,
    Server,
    measured,
    memory_mib,
    multipart,
    pair_result,
    report,
    serving,
    start_python,
    start_service,
    summarise,
    v2_binary_request,
    worker_pids,
    wrk,
)
from machine import describe_machine
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

BATCH = 64
CNN_MODEL = "mnist-cnn"
SAMPLES = [REPO / "samples" / f"{digit}.png" for digit in range(10)]


@dataclass(frozen=True)
class Bodies:
    """The batch bodies, written once: 64 PNGs, and the same 64 digits as V2 tensors."""

    batch: Path
    v2: Path
    v2_header_length: int


def write_bodies(folder: Path) -> Bodies:
    folder.mkdir(parents=True, exist_ok=True)
    digits = [SAMPLES[index % 10] for index in range(BATCH)]
    batch, v2 = folder / "batch.body", folder / "v2.body"
    batch.write_bytes(multipart("files", [(path.name, path.read_bytes()) for path in digits]))
    pixels = np.stack([np.asarray(Image.open(path), dtype=np.uint8) for path in digits])
    tensor = (pixels.reshape(BATCH, -1) / np.float32(255)).astype("<f4")
    body, header_length = v2_binary_request(tensor, [{"name": "label", "parameters": {"binary_data": True}}])
    v2.write_bytes(body)
    return Bodies(batch, v2, header_length)


def _log(name: str) -> Path:
    return WORK / f"{name.strip('/').replace(' ', '-').replace('/', '-').replace(',', '')}.log"


def service(workers: int, name: str = "/predict", **environment: str) -> Callable[[], Server]:
    return lambda: start_service(name, _log(name), WORKERS=str(workers), **environment)


def bare(workers: int) -> Callable[[], Server]:
    environment = {"WORKERS": str(workers), "LOG_LEVEL": "warning"}
    name = "bare endpoint"
    return lambda: replace(start_python("bench.bare_app", name, _log(name), environment), answer=None)


def batch_routes(server: Server, bodies: Bodies) -> tuple[Server, Server]:
    """The same running service, loaded with 64 PNGs on /predict/batch and 64 tensors on V2 infer."""
    base = server.url.removesuffix("/predict")
    batch = replace(server, name="/predict/batch x64", url=f"{base}/predict/batch", body=bodies.batch, answer=None)
    return batch, v2_route(server, bodies, BENCHMARKED_MODEL)


def v2_route(server: Server, bodies: Bodies, model: str) -> Server:
    """The same running service, loaded with 64 tensors on `model`'s V2 infer."""
    return replace(
        server,
        name=f"V2 infer binary x64, {model}",
        url=f"{server.url.removesuffix('/predict')}/v2/models/{model}/infer",
        content_type="application/octet-stream",
        body=bodies.v2,
        header=("Inference-Header-Content-Length", str(bodies.v2_header_length)),
        answer=None,
    )


def cnn_routes(server: Server, bodies: Bodies) -> tuple[Server, Server]:
    """The same running service, loaded on the CNN: single /predict, and 64 tensors on V2 infer."""
    single = replace(server, name=f"/predict, {CNN_MODEL}", url=f"{server.url}?model={CNN_MODEL}")
    return single, v2_route(server, bodies, CNN_MODEL)


def rounds_of(servers: list[Server], args: argparse.Namespace) -> list[list[dict[str, Any]]]:
    """Each server's runs, taking turns: A B C A B C ..., after a short warm-up of each."""
    for server in servers:
        wrk(server, 2)
    runs: list[list[dict[str, Any]]] = [[] for _ in servers]
    for _ in range(args.rounds):
        for server, server_runs in zip(servers, runs, strict=True):
            server_runs.append(wrk(server, args.seconds))
            report(server.name, server_runs[-1])
    return runs


def mean_seconds(server: Server, name: str, labels: dict[str, str]) -> float:
    with urllib.request.urlopen(server.url.replace("/predict", "/metrics")) as response:  # noqa: S310 (http://127.0.0.1)
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (f"{name}_sum", f"{name}_count") and labels.items() <= sample.labels.items():
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values[f"{name}_sum"] / values[f"{name}_count"]


def compare_workers(bodies: Bodies, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        ours = stack.enter_context(serving(service(workers)))
        floor = stack.enter_context(serving(bare(workers)))
        one_worker_extras = (*batch_routes(ours, bodies), *cnn_routes(ours, bodies)) if workers == 1 else ()
        servers = [ours, floor, *one_worker_extras]
        runs = rounds_of(servers, args)
        result = pair_result(runs[0], runs[1])
        result["peak_rss_mib_per_worker"] = [
            round(memory_mib(pid, "VmHWM"), 1) for pid in worker_pids(ours.process.pid)
        ]
        if workers == 1:
            single = result["mnist_serve"]["rps"]
            batch, v2, cnn, cnn_v2 = (summarise(server_runs) for server_runs in runs[2:])
            for summary in (batch, v2, cnn_v2):
                summary["images_per_s"] = round(summary["rps"] * BATCH, 1)
                summary["vs_single_predict"] = round(summary["images_per_s"] / single, 2)
            v2["vs_batch"] = round(v2["images_per_s"] / batch["images_per_s"], 2)
            cnn["vs_benchmarked_model"] = round(cnn["rps"] / single, 2)
            result["batch64"], result["v2_binary64"] = batch, v2
            result["cnn_predict"], result["cnn_v2_binary64"] = cnn, cnn_v2
        return result


def production_cost(args: argparse.Namespace) -> dict[str, Any]:
    """The service with its production settings (A) against the same with LOG_LEVEL=warning (B)."""
    with ExitStack() as stack:
        production = stack.enter_context(serving(service(1)))
        quiet = stack.enter_context(serving(service(1, "/predict, LOG_LEVEL=warning", LOG_LEVEL="warning")))
        result = pair_result(*rounds_of([production, quiet], args))
        # Server-side means over single /predict requests only (this service served no batches).
        result["model_call_us"] = round(1e6 * mean_seconds(production, "mnist_inference_duration_seconds", {}), 1)
        labels = {"route": "/predict", "status": "200"}
        result["request_us"] = round(1e6 * mean_seconds(production, "mnist_http_request_duration_seconds", labels), 1)
        return result


def time_to_ready(repeats: int) -> dict[str, float]:
    ready, imports = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, fastapi"], check=True)
        imports.append(time.perf_counter() - started)
        with serving(service(1)) as server:
            ready.append(server.ready_seconds)
    result = {
        "ready_s": round(statistics.median(ready), 3),
        "import_torch_fastapi_s": round(statistics.median(imports), 3),
    }
    result["ratio"] = round(result["ready_s"] / result["import_torch_fastapi_s"], 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="length of each measured wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="turns per comparison")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (scripts/system-deps.sh wrk, or apt-get install wrk)", file=sys.stderr)
        return 1
    bodies = write_bodies(WORK / "bodies")
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": describe_machine(),
        "command": shlex.join(["python", "bench/serve_bench.py", *sys.argv[1:]]),
        "load": f"wrk -t1 -c8, {args.rounds} rounds of {args.seconds} s, servers taking turns",
        "workers": {},
    }

    def measure_all() -> None:
        for workers in args.workers:
            print(f"== {workers} worker(s)", flush=True)
            results["workers"][str(workers)] = compare_workers(bodies, workers, args)
        print("== production settings against LOG_LEVEL=warning", flush=True)
        results["production_cost"] = production_cost(args)
        results["time_to_ready"] = time_to_ready(repeats=5)

    status = measured(measure_all)
    if status:
        return status
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


def print_table(results: dict[str, Any]) -> None:
    print(
        "\n| workers | /predict req/s | p50 ms | p99 ms | bare endpoint req/s | /predict ÷ bare | peak RSS/worker MiB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for workers, run in results["workers"].items():
        ours, floor = run["mnist_serve"], run["peer"]
        rss = ", ".join(f"{value:.0f}" for value in run["peak_rss_mib_per_worker"])
        print(
            f"| {workers} | {ours['rps']:,.0f} | {ours['p50_ms']:.2f} | {ours['p99_ms']:.2f} | {floor['rps']:,.0f} | "
            f"{run['ratio']:.2f} | {rss} |"
        )
    one = results["workers"].get("1")
    if one:
        batch, v2 = one["batch64"], one["v2_binary64"]
        print(
            f"\n/predict/batch x64: {batch['images_per_s']:,.0f} images/s, {batch['vs_single_predict']:.1f}x single "
            f"/predict (p99 {batch['p99_ms']:.1f} ms)\nV2 binary x64: {v2['images_per_s']:,.0f} images/s, "
            f"{v2['vs_batch']:.1f}x /predict/batch, {v2['vs_single_predict']:.1f}x single /predict"
        )
        cnn, cnn_v2 = one["cnn_predict"], one["cnn_v2_binary64"]
        print(
            f"{CNN_MODEL}: /predict {cnn['rps']:,.0f} req/s ({cnn['vs_benchmarked_model']:.2f} of "
            f"{BENCHMARKED_MODEL}'s, p99 {cnn['p99_ms']:.1f} ms), V2 binary x64 {cnn_v2['images_per_s']:,.0f} "
            f"images/s (p99 {cnn_v2['p99_ms']:.1f} ms)"
        )
    cost = results["production_cost"]
    print(
        f"production settings (access log on) against LOG_LEVEL=warning: {cost['ratio']:.2f} of the req/s, "
        f"{cost['ratio_per_core']:.2f} per server core"
    )
    print(f"model call {cost['model_call_us']:.0f} us of a {cost['request_us']:.0f} us request (server-side means)")
    ready = results["time_to_ready"]
    print(
        f"time to ready {ready['ready_s']:.2f} s vs import torch, fastapi {ready['import_torch_fastapi_s']:.2f} s "
        f"({ready['ratio']:.2f}x)"
    )


if __name__ == "__main__":
    sys.exit(main())
