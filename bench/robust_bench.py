"""Robustness benchmark: the shipped models on MNIST test digits redrawn as people draw and photograph them.

Starts the real service (`python -m app`, one worker, the repository's models/), sends every file
of every case (bench/robust_cases.py) as multipart `files` to `/predict/batch?model=<name>` in
batches of at most 64, for each model, and prints the accuracy per case and model as a markdown
table. Results go to bench/robust_results.json.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import date
from pathlib import Path

import numpy as np
from machine import describe_machine
from robust_cases import DIGITS_PER_CASE, SELECTION_SEED, Case, build_cases

from training.data import DatasetError, load_mnist, missing_files

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work"
DATA_DIRS = (REPO.parent / "shared" / "datasets", REPO / "dataset")
MODELS = ("mnist", "mnist-reference")
MAX_FILES_PER_REQUEST = 64  # the service's MAX_BATCH
MAX_BYTES_PER_REQUEST = 4 << 20  # well inside its MAX_BATCH_BYTES


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(port: int, log_path: Path) -> subprocess.Popen:
    environment = {
        **os.environ,
        "PORT": str(port),
        "WORKERS": "1",
        "MODEL_REPOSITORY": str(REPO / "models"),
        "LOG_LEVEL": "warning",
    }
    log = log_path.open("w")
    return subprocess.Popen([sys.executable, "-m", "app"], cwd=REPO, env=environment, stdout=log, stderr=log)


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}; see {WORK / 'robust-service.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the service was not ready after {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def multipart(files: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="case-{index}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for index, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def batches(files: list[bytes]) -> list[list[bytes]]:
    """Consecutive runs of files within the service's limits on files and bytes per request."""
    runs: list[list[bytes]] = [[]]
    size = 0
    for data in files:
        if runs[-1] and (len(runs[-1]) == MAX_FILES_PER_REQUEST or size + len(data) > MAX_BYTES_PER_REQUEST):
            runs.append([])
            size = 0
        runs[-1].append(data)
        size += len(data)
    return runs


def predict_classes(port: int, model: str, files: list[bytes]) -> np.ndarray:
    classes = []
    for run in batches(files):
        body, content_type = multipart(run)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict/batch?model={model}", data=body, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (http://127.0.0.1 above)
            classes.extend(prediction["class"] for prediction in json.load(response)["predictions"])
    return np.array(classes)


def describe_models(port: int, models: tuple[str, ...]) -> dict[str, dict]:
    """Each benchmarked model's served version (the newest), its weights' sha256 and test accuracy."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=10) as response:
        index = {entry["name"]: entry for entry in json.load(response)["models"]}
    described = {}
    for model in models:
        entry = index[model]
        version = next(item for item in entry["versions"] if item["version"] == entry["default_version"])
        described[model] = {key: version[key] for key in ("version", "weights_sha256", "test_accuracy")}
    return described


def run(cases: list[Case], models: tuple[str, ...]) -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = start_service(port, WORK / "robust-service.log")
    try:
        wait_ready(port, process)
        described = describe_models(port, models)
        rows = []
        for case in cases:
            started = time.perf_counter()
            correct = {model: int((predict_classes(port, model, case.files) == case.labels).sum()) for model in models}
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "case": case.name,
                    "description": case.description,
                    "files": len(case.files),
                    "correct": correct,
                    "accuracy": {model: round(100 * count / len(case.files), 1) for model, count in correct.items()},
                    "seconds": round(seconds, 2),
                }
            )
            print(f"{case.name}: " + ", ".join(f"{m} {a} %" for m, a in rows[-1]["accuracy"].items()), file=sys.stderr)
    finally:
        stop(process)
    return {"models": described, "cases": rows}


def markdown_table(results: dict, models: tuple[str, ...]) -> str:
    lines = [
        "| case | what the files are | " + " | ".join(f"`{model}`" for model in models) + " |",
        "| --- | --- | " + " | ".join("---" for _ in models) + " |",
    ]
    for row in results["cases"]:
        scores = " | ".join(f"{row['accuracy'][model]:.1f} %" for model in models)
        lines.append(f"| {row['case']} | {row['description']} | {scores} |")
    return "\n".join(lines)


def find_data_dir(given: Path | None) -> Path:
    candidates = [given] if given is not None else list(DATA_DIRS)
    for folder in candidates:
        if not missing_files(folder):
            return folder
    raise DatasetError(
        f"MNIST not found in {' or '.join(str(folder) for folder in candidates)}; `make train` downloads it "
        "into dataset/, or give --data-dir a folder that holds MNIST/raw/"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding MNIST/raw/")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="served models to compare")
    parser.add_argument("--count", type=int, default=DIGITS_PER_CASE, help="test digits per case")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "robust_results.json")
    args = parser.parse_args()
    try:
        _, test_split = load_mnist(find_data_dir(args.data_dir), download=False)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    models = tuple(args.models)
    started = time.perf_counter()
    cases = build_cases(test_split.images.numpy(), test_split.labels.numpy(), args.count)
    generated = time.perf_counter() - started
    results = run(cases, models)
    results.update(
        date=date.today().isoformat(),
        machine=describe_machine(),
        digits_per_case=args.count,
        selection_seed=SELECTION_SEED,
        seconds_to_generate=round(generated, 1),
    )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_table(results, models))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
