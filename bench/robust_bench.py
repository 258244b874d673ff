"""Robustness benchmark: the shipped models on MNIST test digits redrawn as people draw and photograph them.

Starts the real service (`python -m app`, one worker, the repository's models/), sends every file
of every case (bench/robust_cases.py) as multipart `files` to `/predict/batch?model=<name>` in
batches of at most 64, for each model, and prints the accuracy and the expected calibration error
(15 bins, of the scores as served) per case and model as a markdown table. Results go to
bench/robust_results.json.
"""

import argparse
import json
import sys
import time
import urllib.request
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
from harness import MULTIPART_TYPE, REPO, WORK, multipart, serving, start_service
from machine import describe_machine
from robust_cases import DIGITS_PER_CASE, SELECTION_SEED, Case, build_cases

from training.calibrate import expected_calibration_error
from training.data import DatasetError, load_mnist, missing_files

DATA_DIRS = (REPO.parent / "shared" / "datasets", REPO / "dataset")
MODELS = ("mnist", "mnist-cnn", "mnist-reference")
MAX_FILES_PER_REQUEST = 64  # the service's MAX_BATCH
MAX_BYTES_PER_REQUEST = 4 << 20  # well inside its MAX_BATCH_BYTES


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


def predict_scores(base_url: str, model: str, files: list[bytes]) -> np.ndarray:
    """The served scores (N, 10) of each file, as /predict/batch answers them."""
    scores = []
    for run in batches(files):
        body = multipart("files", [(f"case-{index}", data) for index, data in enumerate(run)])
        url = f"{base_url}/predict/batch?model={model}"
        request = urllib.request.Request(url, data=body, headers={"Content-Type": MULTIPART_TYPE})  # noqa: S310
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (http://127.0.0.1, harness)
            scores.extend(prediction["scores"] for prediction in json.load(response)["predictions"])
    return np.array(scores)


def describe_models(base_url: str, models: tuple[str, ...]) -> dict[str, dict]:
    """Each benchmarked model's served version (the newest), its weights' sha256 and test accuracy."""
    with urllib.request.urlopen(f"{base_url}/models", timeout=10) as response:  # noqa: S310 (http://127.0.0.1)
        index = {entry["name"]: entry for entry in json.load(response)["models"]}
    described = {}
    for model in models:
        entry = index[model]
        version = next(item for item in entry["versions"] if item["version"] == entry["default_version"])
        described[model] = {key: version[key] for key in ("version", "weights_sha256", "test_accuracy")}
    return described


def run(cases: list[Case], models: tuple[str, ...]) -> dict:
    with serving(partial(start_service, "mnist-serve", WORK / "robust-service.log", LOG_LEVEL="warning")) as server:
        base_url = server.url.removesuffix("/predict")
        described = describe_models(base_url, models)
        rows = []
        for case in cases:
            started = time.perf_counter()
            scores = {model: predict_scores(base_url, model, case.files) for model in models}
            seconds = time.perf_counter() - started
            correct = {model: int((served.argmax(axis=1) == case.labels).sum()) for model, served in scores.items()}
            ece = {model: round(expected_calibration_error(served, case.labels), 2) for model, served in scores.items()}
            rows.append(
                {
                    "case": case.name,
                    "description": case.description,
                    "files": len(case.files),
                    "correct": correct,
                    "accuracy": {model: round(100 * count / len(case.files), 1) for model, count in correct.items()},
                    "ece_percent": ece,
                    "seconds": round(seconds, 2),
                }
            )
            shown = ", ".join(f"{m} {a} % (ECE {ece[m]:.2f} %)" for m, a in rows[-1]["accuracy"].items())
            print(f"{case.name}: {shown}", file=sys.stderr)
    return {"models": described, "cases": rows}


def markdown_table(results: dict, models: tuple[str, ...]) -> str:
    lines = [
        "| case | what the files are | " + " | ".join(f"`{model}`" for model in models) + " |",
        "| --- | --- | " + " | ".join("---" for _ in models) + " |",
    ]
    for row in results["cases"]:
        scores = " | ".join(f"{row['accuracy'][model]:.1f} % (ECE {row['ece_percent'][model]:.2f})" for model in models)
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
