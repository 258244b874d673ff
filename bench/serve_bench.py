"""Serving benchmark: the real /predict against a bare endpoint of the same stack, in one run.

For each worker count, the service (`python -m app`, production settings: access log on) and the
bare app (`bench/bare_app.py`: same uvicorn, same workers, reads the same upload, answers constant
JSON) run side by side and are loaded by wrk in turns, A B A B ..., so drift on a shared machine
weighs on both. Then: /predict/batch with 64 images, time from process start to /readyz, and peak
RSS per worker. Results go to bench/results.json.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

from machine import describe_machine
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work"
LUA = REPO / "bench" / "multipart.lua"
DIGIT = REPO / "samples" / "7.png"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 60.0) -> float:
    """Seconds until /readyz answers 200, polling every 5 ms."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"server on port {port} not ready after {timeout} s")


def start_service(port: int, workers: int, log_name: str) -> subprocess.Popen:
    env = {**os.environ, "PORT": str(port), "WORKERS": str(workers)}
    log = (WORK / log_name).open("w")
    return subprocess.Popen([sys.executable, "-m", "app"], cwd=REPO, env=env, stdout=log, stderr=log)


def start_bare(port: int, workers: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--no-server-header",
    ]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wrk(url: str, field: str, files: list[Path], seconds: int, connections: int) -> dict:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "-s",
        str(LUA),
        url,
        "--",
        field,
        *(str(path) for path in files),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^WRK_JSON (.*)$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no statistics:\n{output}")
    stats = json.loads(match.group(1))
    failures = stats["non_2xx"] + stats["connect_errors"] + stats["read_errors"] + stats["write_errors"]
    if failures or stats["timeouts"]:
        raise RuntimeError(f"{url}: {failures} failed requests and {stats['timeouts']} timeouts")
    return stats


def worker_pids(process: subprocess.Popen, workers: int) -> list[int]:
    if workers == 1:
        return [process.pid]
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if "multiprocessing" not in Path(f"/proc/{pid}/cmdline").read_text()
        or "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()
    ]


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


def summarise(runs: list[dict]) -> dict:
    return {
        "rps": round(statistics.mean(run["rps"] for run in runs), 1),
        "p50_ms": round(statistics.median(run["p50_ms"] for run in runs), 3),
        "p99_ms": round(statistics.median(run["p99_ms"] for run in runs), 3),
        "rounds_rps": [run["rps"] for run in runs],
    }


def mean_seconds(port: int, name: str, labels: dict[str, str]) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        text = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (f"{name}_sum", f"{name}_count") and labels.items() <= sample.labels.items():
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values[f"{name}_sum"] / values[f"{name}_count"]


def compare(workers: int, args: argparse.Namespace) -> dict:
    service_port, bare_port = free_port(), free_port()
    service = start_service(service_port, workers, f"service-{workers}-workers.log")
    bare = start_bare(bare_port, workers)
    try:
        wait_ready(service_port, service)
        wait_ready(bare_port, bare)
        predict_runs, bare_runs = [], []
        for _ in range(args.rounds):
            predict_runs.append(
                wrk(f"http://127.0.0.1:{service_port}/predict", "file", [DIGIT], args.seconds, args.connections)
            )
            bare_runs.append(
                wrk(f"http://127.0.0.1:{bare_port}/predict", "file", [DIGIT], args.seconds, args.connections)
            )
        result = {"predict": summarise(predict_runs), "bare": summarise(bare_runs)}
        result["ratio"] = round(result["predict"]["rps"] / result["bare"]["rps"], 3)
        result["peak_rss_mib_per_worker"] = [round(peak_rss_mib(pid), 1) for pid in worker_pids(service, workers)]
        if workers == 1:
            result["model_call_ms"] = round(
                1000 * mean_seconds(service_port, "mnist_inference_duration_seconds", {}), 4
            )
            result["request_ms"] = round(
                1000
                * mean_seconds(
                    service_port, "mnist_http_request_duration_seconds", {"route": "/predict", "status": "200"}
                ),
                4,
            )
            batch = wrk(
                f"http://127.0.0.1:{service_port}/predict/batch", "files", [DIGIT] * 64, args.seconds, args.connections
            )
            result["batch64"] = {
                "images_per_s": round(batch["rps"] * 64, 1),
                "p99_ms": batch["p99_ms"],
                "vs_single_predict": round(batch["rps"] * 64 / result["predict"]["rps"], 2),
            }
        return result
    finally:
        stop(service)
        stop(bare)


def time_to_ready(repeats: int) -> dict:
    ready, imports = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, fastapi"], check=True)
        imports.append(time.perf_counter() - started)
        port = free_port()
        service = start_service(port, 1, "time-to-ready.log")
        try:
            ready.append(wait_ready(port, service))
        finally:
            stop(service)
    result = {
        "ready_s": round(statistics.median(ready), 3),
        "import_torch_fastapi_s": round(statistics.median(imports), 3),
    }
    result["ratio"] = round(result["ready_s"] / result["import_torch_fastapi_s"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds per worker count")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    WORK.mkdir(parents=True, exist_ok=True)

    results = {
        "date": date.today().isoformat(),
        "machine": describe_machine(),
        "command": "make bench",
        "load": f"wrk -t1 -c{args.connections}, {args.rounds} rounds of {args.seconds} s each, A/B alternating",
        "workers": {},
    }
    for workers in args.workers:
        results["workers"][str(workers)] = compare(workers, args)
        print(f"{workers} worker(s): {json.dumps(results['workers'][str(workers)])}", flush=True)
    results["time_to_ready"] = time_to_ready(repeats=5)
    print(f"time to ready: {json.dumps(results['time_to_ready'])}")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {args.out}")


def print_table(results: dict) -> None:
    print("\n| workers | /predict req/s | p50 ms | p99 ms | bare req/s | ratio | peak RSS/worker MiB |")
    print("|---|---|---|---|---|---|---|")
    for workers, run in results["workers"].items():
        print(
            f"| {workers} | {run['predict']['rps']:.0f} | {run['predict']['p50_ms']:.2f} | "
            f"{run['predict']['p99_ms']:.2f} | {run['bare']['rps']:.0f} | {run['ratio']:.2f} | "
            f"{', '.join(f'{rss:.0f}' for rss in run['peak_rss_mib_per_worker'])} |"
        )
    one = results["workers"].get("1")
    if one:
        print(
            f"\n/predict/batch x64: {one['batch64']['images_per_s']:.0f} images/s, "
            f"{one['batch64']['vs_single_predict']:.1f}x single /predict"
        )
        print(
            f"model call {one['model_call_ms'] * 1000:.0f} us of a {one['request_ms'] * 1000:.0f} us request "
            "(server-side mean)"
        )
    ready = results["time_to_ready"]
    print(
        f"time to ready {ready['ready_s']:.2f} s vs import torch, fastapi {ready['import_torch_fastapi_s']:.2f} s "
        f"({ready['ratio']:.2f}x)"
    )


if __name__ == "__main__":
    main()
