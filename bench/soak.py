"""Soak (`make soak`): the service as users run it, under mixed load and version swaps, for a set time.

`python -m app` with --workers workers serves a copy of models/, polled for changes, while
- wrk loads /predict (samples/7.png), /predict/batch (samples 0-9), V2 infer (the same ten digits
  as a UINT8 image tensor) and six kinds of bad upload at once, in windows of --window seconds,
  and checks every answer: its status, and the classes it names;
- a client sends bodies of 4 and 8 MB that no route accepts whole before it reads, to each
  prediction route, and must read its early 4xx every time (a lost answer shows up as a reset);
- the next version of mnist (a copy of its newest) is published and removed in turn every --swap-seconds.
After each window it samples every worker's RSS and open files. At the end it stops the service
with SIGTERM, reads its log, prints a summary against bounds and exits 1 when one is broken.
With --no-load it only swaps versions, for a worker's memory across many swaps (the README's
500-swap figure: --workers 1 --swap-seconds 0.6 --poll-seconds 0.25 --no-load).
Linux only: it reads /proc.
"""

import argparse
import http.client
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from harness import REPO, WORK, memory_mib, multipart, serving, start_service, worker_pids
from machine import describe_machine
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

LUA = REPO / "bench" / "soak.lua"
SAMPLES = [REPO / "samples" / f"{digit}.png" for digit in range(10)]
ALL_DIGITS = "0123456789"
OVER_LIMIT_ROUTES = ("/predict", "/predict/batch", "/v2/models/mnist/infer")
OVER_LIMIT_MEGABYTES = (4, 8)
OVER_LIMIT_PAUSE_SECONDS = 0.5
MIB = 1024 * 1024
OPEN_FILES_SLACK = 16  # connections in flight at a sample; a leak of one per swap or request passes it
SHUTDOWN_BOUND_SECONDS = 10.0
GROWTH_SAMPLES = 6  # a minute of 10-s windows at each end of the settled run


@dataclass(frozen=True)
class Load:
    """One kind of request wrk sends: its route, bodies in turn, and what a right answer is."""

    name: str
    path: str
    content_type: str
    expected_status: str  # "200", or "4xx" for any client error
    classes: str  # digits a right answer names, in order; "-": the status alone is checked
    bodies: tuple[Path, ...]
    connections: int


@dataclass
class Window:
    seconds_since_start: float
    loads: dict[str, dict[str, Any]]
    rss_mib: dict[int, float]
    open_files: dict[int, int]


@dataclass
class OverLimitTally:
    tries: Counter = field(default_factory=Counter)
    answered: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def _write(name: str, body: bytes) -> Path:
    path = WORK / "soak" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def prepare_loads() -> list[Load]:
    """The request bodies, written to bench/.work/soak/, and the loads that send them."""
    boundary_type = "multipart/form-data; boundary=mnist-serve-bench-boundary"
    png = SAMPLES[7].read_bytes()
    digits = [(sample.name, sample.read_bytes()) for sample in SAMPLES]
    pixels = np.stack([np.asarray(Image.open(sample).convert("L")) for sample in SAMPLES])
    tensor = {
        "inputs": [
            {"name": "image", "datatype": "UINT8", "shape": list(pixels.shape), "data": pixels.ravel().tolist()}
        ],
        "outputs": [{"name": "label"}],
    }
    closing = b"--mnist-serve-bench-boundary--\r\n"
    bad = {
        "text": multipart("file", [("note.txt", b"not an image at all\n")]),
        "truncated": multipart("file", [("7.png", png[: len(png) // 2])]),
        "empty": multipart("file", [("empty.png", b"")]),
        "wrong-field": multipart("image", [("7.png", png)]),
        "oversized": multipart("file", [("big.png", png + bytes(MIB + 64 * 1024))]),
        "unterminated": multipart("file", [("7.png", png)]).removesuffix(closing),
    }
    single = (_write("single", multipart("file", [digits[7]])),)
    batch = (_write("batch", multipart("files", digits)),)
    v2 = (_write("v2", json.dumps(tensor).encode()),)
    bad_uploads = tuple(_write(f"bad-{name}", body) for name, body in bad.items())
    return [
        Load("single", "/predict", boundary_type, "200", "7", single, 4),
        Load("batch", "/predict/batch", boundary_type, "200", ALL_DIGITS, batch, 2),
        Load("v2", "/v2/models/mnist/infer", "application/json", "200", ALL_DIGITS, v2, 2),
        Load("bad-uploads", "/predict", boundary_type, "4xx", "-", bad_uploads, 2),
    ]


def check_answers(base_url: str, loads: list[Load]) -> None:
    """Each body answered once as the load expects it, read by Python: the Lua checks are only as
    right as this agreement."""
    for load in loads:
        for body in load.bodies:
            response = httpx.post(
                base_url + load.path, content=body.read_bytes(), headers={"Content-Type": load.content_type}, timeout=30
            )
            named = _named_classes(response.json()) if response.status_code == 200 else "-"
            if not _status_expected(response.status_code, load.expected_status) or load.classes not in ("-", named):
                raise SystemExit(f"error: {load.name} ({body.name}) answered {response.status_code} naming {named!r}")


def _named_classes(reply: dict[str, Any]) -> str:
    if "outputs" in reply:
        return "".join(str(label) for label in reply["outputs"][0]["data"])
    return "".join(str(prediction["class"]) for prediction in reply.get("predictions", [reply]))


def _status_expected(status: int, expected: str) -> bool:
    return status // 100 == int(expected[0]) if expected.endswith("xx") else status == int(expected)


def run_window(base_url: str, loads: list[Load], seconds: int) -> dict[str, dict[str, Any]]:
    """Every load at once for `seconds`, each by its own wrk; their counts and latencies."""
    if not loads:  # --no-load: the window only paces the samples
        time.sleep(seconds)
        return {}
    started = {
        load.name: subprocess.Popen(
            ["wrk", "-t1", f"-c{load.connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA)]
            + [base_url + load.path, "--", load.content_type, load.expected_status, load.classes]
            + [str(body) for body in load.bodies],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for load in loads
    }
    results = {}
    for name, process in started.items():
        output = process.communicate()[0]
        line = next((line for line in output.splitlines() if line.startswith("WRK_JSON ")), None)
        if process.returncode or line is None:
            raise SystemExit(f"error: wrk for {name} failed:\n{output}")
        results[name] = json.loads(line.removeprefix("WRK_JSON "))
    return results


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def send_whole_then_read(host: str, port: int, path: str, body: bytes) -> int:
    """Writes the entire request before reading a byte of the answer, as simple clients do; its status."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("POST", path, body, {"Content-Type": "multipart/form-data; boundary=b"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def send_over_limit_bodies(host: str, port: int, tally: OverLimitTally, stop: threading.Event) -> None:
    """Bodies no route accepts (over /predict's size limit, a multipart part that never ends), sent whole."""
    bodies = {megabytes: b"--b\r\n" + bytes(megabytes * MIB) for megabytes in OVER_LIMIT_MEGABYTES}
    for attempt in itertools.count():
        if stop.wait(OVER_LIMIT_PAUSE_SECONDS):
            return
        path = OVER_LIMIT_ROUTES[attempt % len(OVER_LIMIT_ROUTES)]
        megabytes = OVER_LIMIT_MEGABYTES[attempt // len(OVER_LIMIT_ROUTES) % len(OVER_LIMIT_MEGABYTES)]
        key = f"{path} {megabytes} MB"
        tally.tries[key] += 1
        try:
            status = send_whole_then_read(host, port, path, bodies[megabytes])
        except (OSError, http.client.HTTPException) as error:
            tally.failures.append(f"{key}: {type(error).__name__}: {error}")
            continue
        tally.statuses[f"{key}: {status}"] += 1
        if 400 <= status < 500:
            tally.answered[key] += 1


def swap_versions(repository: Path, staging: Path, interval: float, swaps: list[float], stop: threading.Event) -> None:
    """Publishes a copy of mnist's newest version as the next one (moved in whole) and removes it
    again, in turn: every swap is a load, every removal a return to the version before."""
    newest = max((path for path in (repository / "mnist").iterdir() if path.name.isdigit()), key=lambda p: int(p.name))
    published = newest.with_name(str(int(newest.name) + 1))
    started = time.monotonic()
    while not stop.wait(interval):
        if published.exists():
            retired = staging / f"retired-{len(swaps)}"
            published.rename(retired)  # out of the repository in one step, then deleted at leisure
            shutil.rmtree(retired)
        else:
            shutil.copytree(newest, staging / published.name)
            (staging / published.name).rename(published)
        swaps.append(time.monotonic() - started)


def model_loads(base_url: str) -> dict[str, float]:
    loads: Counter = Counter()
    for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "mnist_model_loads_total":
                loads[sample.labels["outcome"]] += sample.value
    return dict(loads)


def log_problems(log: Path) -> dict[str, int]:
    """ERROR and CRITICAL lines and tracebacks in the service's text log."""
    problems: Counter = Counter()
    with log.open(errors="replace") as lines:
        for line in lines:
            fields = line.split(" ", 3)
            if len(fields) > 2 and fields[2] in ("ERROR", "CRITICAL"):
                problems[fields[2]] += 1
            elif line.startswith("Traceback"):
                problems["Traceback"] += 1
    return dict(problems)


def terminate(process: subprocess.Popen) -> tuple[int | None, float]:
    """SIGTERM, as docker stop and Kubernetes send it: the exit status and the seconds it took."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60), time.monotonic() - started
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started


def latency_summary(windows: list[Window], name: str) -> dict[str, float]:
    p99s = [window.loads[name]["p99_ms"] for window in windows]
    return {
        "p50_ms_median": round(statistics.median(window.loads[name]["p50_ms"] for window in windows), 3),
        "p99_ms_median": round(statistics.median(p99s), 3),
        "p99_ms_worst": round(max(p99s), 3),
    }


def growth(windows: list[Window], warm_up: float, reading: str) -> dict[int, tuple[float, float]]:
    """Per worker: the median of its readings over the first samples after warm-up, and over the
    last ones (medians, since a sample may fall just before or after a trim or a swap's load)."""
    settled = [window for window in windows if window.seconds_since_start >= warm_up]
    span = max(1, min(GROWTH_SAMPLES, len(settled) // 2))
    first, last = settled[:span], settled[-span:]
    workers = set(getattr(first[0], reading)) & set(getattr(last[-1], reading))
    return {pid: tuple(_median_of(sample, reading, pid) for sample in (first, last)) for pid in workers}


def _median_of(windows: list[Window], reading: str, pid: int) -> float:
    return statistics.median(getattr(window, reading)[pid] for window in windows if pid in getattr(window, reading))


def soak(arguments: argparse.Namespace) -> dict[str, Any]:
    loads = [] if arguments.no_load else prepare_loads()
    scratch = Path(tempfile.mkdtemp(prefix="mnist-soak-"))
    repository, staging = scratch / "models", scratch / "staging"
    shutil.copytree(REPO / "models", repository)
    staging.mkdir()
    log = scratch / "service.log"
    environment = {
        "WORKERS": str(arguments.workers),
        "MODEL_REPOSITORY": str(repository),
        "MODEL_POLL_SECONDS": str(arguments.poll_seconds),
    }
    stop = threading.Event()
    tally, swaps, windows = OverLimitTally(), [], []
    with serving(lambda: start_service("soak", log, **environment)) as server:
        base_url = server.url.removesuffix("/predict")
        check_answers(base_url, loads)
        workers = worker_pids(server.process.pid)
        host, port = "127.0.0.1", int(base_url.rpartition(":")[2])
        helpers = [
            threading.Thread(target=swap_versions, args=(repository, staging, arguments.swap_seconds, swaps, stop))
        ]
        if loads:
            helpers.append(threading.Thread(target=send_over_limit_bodies, args=(host, port, tally, stop)))
        for helper in helpers:
            helper.start()
        started = time.monotonic()
        try:
            while (remaining := arguments.duration - (time.monotonic() - started)) >= 1:
                results = run_window(base_url, loads, int(min(arguments.window, remaining)))
                sampled = worker_pids(server.process.pid)
                window = Window(
                    round(time.monotonic() - started, 1),
                    results,
                    {pid: memory_mib(pid) for pid in sampled},
                    {pid: open_files(pid) for pid in sampled},
                )
                windows.append(window)
                print_window(window, len(swaps))
        finally:
            stop.set()
            for helper in helpers:
                helper.join()
        loads_by_outcome = model_loads(base_url)
        exit_status, shutdown_seconds = terminate(server.process)
    result = {
        "machine": describe_machine(),
        "date": date.today().isoformat(),
        "settings": {key: value for key, value in vars(arguments).items() if key != "json"},
        "workers_at_start": workers,
        "workers_at_end": sorted(windows[-1].rss_mib),
        "requests": {
            load.name: {
                "total": sum(window.loads[load.name]["requests"] for window in windows),
                **latency_summary(windows, load.name),
            }
            for load in loads
        },
        "over_limit": {
            "tries": dict(tally.tries),
            "answered_4xx": dict(tally.answered),
            "statuses": dict(tally.statuses),
            "failures": tally.failures[:10],
        },
        "swaps": len(swaps),
        "model_loads": loads_by_outcome,
        "log_problems": log_problems(log),
        "exit_status": exit_status,
        "shutdown_seconds": round(shutdown_seconds, 2),
        "windows": [vars(window) for window in windows],
    }
    result["checks"] = checks(result, windows, arguments)
    shutil.rmtree(scratch)
    return result


def print_window(window: Window, swaps: int) -> None:
    requests = sum(load["requests"] for load in window.loads.values())
    p99 = " ".join(f"{name} {load['p99_ms']:.1f}" for name, load in window.loads.items())
    rss = "/".join(f"{value:.0f}" for value in window.rss_mib.values())
    files = "/".join(str(value) for value in window.open_files.values())
    print(
        f"[soak] {window.seconds_since_start:7.1f} s  {requests:7d} requests  p99 ms: {p99}  "
        f"RSS MiB {rss}  open files {files}  swaps {swaps}",
        flush=True,
    )


def checks(result: dict[str, Any], windows: list[Window], arguments: argparse.Namespace) -> list[dict[str, Any]]:
    """Each bound: what was measured, the limit, and whether it held."""

    def total(key: str) -> int:
        return sum(window.loads[name][key] for window in windows for name in window.loads)

    rss = growth(windows, arguments.warm_up, "rss_mib")
    files = growth(windows, arguments.warm_up, "open_files")
    rss_growth = max(((last - first) / first * 100 for first, last in rss.values()), default=0.0)
    files_growth = max((last - first for first, last in files.values()), default=0)
    lost = sum(result["over_limit"]["tries"].values()) - sum(result["over_limit"]["answered_4xx"].values())
    measured = [
        ("5xx answers", total("server_errors"), 0),
        ("answers with another status than expected", total("unexpected_status"), 0),
        ("answers naming a wrong class", total("wrong_classes"), 0),
        ("connection errors and timeouts", total("connection_errors"), 0),
        ("bodies sent whole whose early 4xx was not read", lost, 0),
        ("ERROR lines and tracebacks in the log", sum(result["log_problems"].values()), 0),
        ("workers replaced during the run", len(set(result["workers_at_start"]) ^ set(result["workers_at_end"])), 0),
        ("largest worker RSS growth after warm-up, %", round(rss_growth, 2), arguments.max_rss_growth),
        ("largest growth in a worker's open files after warm-up", files_growth, OPEN_FILES_SLACK),
        ("seconds from SIGTERM to exit", result["shutdown_seconds"], SHUTDOWN_BOUND_SECONDS),
    ]
    checked = [
        {"check": name, "value": value, "bound": bound, "passed": value <= bound} for name, value, bound in measured
    ]
    # Not a bound but the right answers: after a graceful shutdown, 0 from the supervisor of several
    # workers, or SIGTERM again from a lone uvicorn, which raises it once it has shut down.
    status, graceful = result["exit_status"], (0, -signal.SIGTERM)
    exit_check = {
        "check": "exit status after SIGTERM",
        "value": status,
        "bound": graceful,
        "passed": status in graceful,
    }
    return [*checked, exit_check]


def print_summary(result: dict[str, Any]) -> None:
    print(f"\n[soak] {result['settings']['duration']} s on {result['machine']}, {result['date']}")
    for name, figures in result["requests"].items():
        print(
            f"  {name:<12} {figures['total']:9d} requests  p50 {figures['p50_ms_median']:.2f} ms  "
            f"p99 {figures['p99_ms_median']:.2f} ms (worst 10-s window {figures['p99_ms_worst']:.2f} ms)"
        )
    print(f"  version swaps {result['swaps']}, model loads {result['model_loads']}")
    print(f"  bodies sent whole before reading, answers: {result['over_limit']['statuses']}")
    for check in result["checks"]:
        verdict = "ok  " if check["passed"] else "FAIL"
        print(f"  {verdict} {check['check']}: {check['value']} (bound {check['bound']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=1800, help="seconds of load (default 1800)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--swap-seconds", type=float, default=30.0, help="time between publishing and removing")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="the service's MODEL_POLL_SECONDS")
    parser.add_argument("--window", type=int, default=10, help="seconds per wrk run and sample")
    parser.add_argument("--warm-up", type=float, help="seconds before the baseline sample (default: a tenth)")
    parser.add_argument("--max-rss-growth", type=float, default=1.0, help="bound on RSS growth after warm-up, %%")
    parser.add_argument("--no-load", action="store_true", help="version swaps alone, without requests")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()
    if arguments.warm_up is None:
        arguments.warm_up = arguments.duration / 10
    if arguments.warm_up + arguments.window > arguments.duration:
        parser.error("--duration must leave at least one window after --warm-up")
    result = soak(arguments)
    print_summary(result)
    if arguments.json:
        arguments.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(check["passed"] for check in result["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
