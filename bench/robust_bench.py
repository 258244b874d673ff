"""Robustness benchmark: the shipped models on MNIST test digits redrawn as people draw and photograph them.

Starts the real service (`python -m app`, one worker, the repository's models/), sends every file
of every case (bench/robust_cases.py) as multipart `files` to `/predict/batch?model=<name>` in
batches of at most 64, for each model, and prints the accuracy, the expected calibration error
(15 bins) of the scores as served and of the same scores untempered (the version's temperature
taken back out), and the share of digits wrongly turned away as not digits, per case and model,
as a markdown table; then each model's reliability over every case together: in each band of
served confidence, how often the answer was right. Then, for pictures that are not digits
(bench/nondigit_cases.py): the share each model turns away (answered not_a_digit, or refused as
holding no digit at all). Results go to bench/robust_results.json.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date
from functools import partial
from http import HTTPStatus
from pathlib import Path

import numpy as np
from harness import MULTIPART_TYPE, REPO, WORK, multipart, serving, start_service
from machine import describe_machine
from nondigit_cases import KINDS as NON_DIGIT_KINDS
from nondigit_cases import PICTURES_PER_KIND, build_kinds
from robust_cases import DIGITS_PER_CASE, SELECTION_SEED, Case, build_cases

from training.calibrate import expected_calibration_error, reliability_bins, untempered
from training.data import DatasetError, load_mnist, missing_files

DATA_DIRS = (REPO.parent / "shared" / "datasets", REPO / "dataset")
MODELS = ("mnist", "mnist-cnn", "mnist-reference")
MAX_FILES_PER_REQUEST = 64  # the service's MAX_BATCH
MAX_BYTES_PER_REQUEST = 4 << 20  # well inside its MAX_BATCH_BYTES
NO_DIGIT_FOUND = "no digit found"  # how the service's 400 for a picture without strokes begins
# Bands of served confidence for the reliability table: where UNSURE_BELOW is chosen.
CONFIDENCE_BANDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


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


@dataclass
class Answers:
    """What the service said of each file: scores and verdict, or None where it found no digit at all."""

    scores: list[list[float] | None]
    verdicts: list[str | None]

    def turned_away(self) -> float:
        """Percent of files answered not_a_digit, or refused as holding no digit (400 "no digit found")."""
        return 100 * sum(verdict in (None, "not_a_digit") for verdict in self.verdicts) / len(self.verdicts)


def predict(base_url: str, model: str, files: list[bytes]) -> Answers:
    """Every file through /predict/batch; a batch refused (a file with no digit at all, say) file by file."""
    answers = Answers([], [])
    for run in batches(files):
        try:
            predictions = _post_files(f"{base_url}/predict/batch?model={model}", "files", run)["predictions"]
        except urllib.error.HTTPError as error:
            if error.code != HTTPStatus.BAD_REQUEST:
                raise
            predictions = [_predict_one(f"{base_url}/predict?model={model}", data) for data in run]
        answers.scores.extend(None if answer is None else answer["scores"] for answer in predictions)
        answers.verdicts.extend(None if answer is None else answer["verdict"] for answer in predictions)
    return answers


def _predict_one(url: str, data: bytes) -> dict | None:
    """The prediction, or None where the service found no digit at all in the picture (400)."""
    try:
        return _post_files(url, "file", [data])
    except urllib.error.HTTPError as error:
        if error.code != HTTPStatus.BAD_REQUEST or not json.load(error)["detail"].startswith(NO_DIGIT_FOUND):
            raise
        return None


def _post_files(url: str, field: str, files: list[bytes]) -> dict:
    body = multipart(field, [(f"file-{index}", data) for index, data in enumerate(files)])
    request = urllib.request.Request(url, data=body, headers={"Content-Type": MULTIPART_TYPE})  # noqa: S310
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (http://127.0.0.1, harness)
        return json.load(response)


def describe_models(base_url: str, models: tuple[str, ...]) -> dict[str, dict]:
    """Each benchmarked model's served version (the newest), its weights' sha256 and test accuracy."""
    with urllib.request.urlopen(f"{base_url}/models", timeout=10) as response:  # noqa: S310 (http://127.0.0.1)
        index = {entry["name"]: entry for entry in json.load(response)["models"]}
    described = {}
    for model in models:
        entry = index[model]
        version = next(item for item in entry["versions"] if item["version"] == entry["default_version"])
        described[model] = {key: version[key] for key in ("version", "weights_sha256", "test_accuracy", "temperature")}
    return described


def run(cases: list[Case], non_digits: dict[str, list[bytes]], models: tuple[str, ...]) -> dict:
    with serving(partial(start_service, "mnist-serve", WORK / "robust-service.log", LOG_LEVEL="warning")) as server:
        base_url = server.url.removesuffix("/predict")
        described = describe_models(base_url, models)
        temperatures = {model: described[model]["temperature"] for model in models}
        rows, scored = zip(*(_digit_case(base_url, case, models, temperatures) for case in cases), strict=True)
        kinds = [_non_digit_kind(base_url, kind, files, models) for kind, files in non_digits.items()]
    reliability = {
        model: _reliability(
            np.concatenate([per_model[model][0] for per_model in scored]),
            np.concatenate([per_model[model][1] for per_model in scored]),
        )
        for model in models
    }
    return {"models": described, "cases": list(rows), "reliability": reliability, "non_digits": kinds}


def _reliability(probabilities: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Per band of served confidence: its share of the answers, how often they were right, their mean confidence."""
    return [
        {
            "band": [part.lower, part.upper],
            "answers_percent": round(100 * part.digits / len(labels), 2),
            "right_percent": round(100 * part.accuracy, 1),
            "mean_confidence_percent": round(100 * part.mean_confidence, 1),
        }
        for part in reliability_bins(probabilities, labels, CONFIDENCE_BANDS)
    ]


def _digit_case(
    base_url: str, case: Case, models: tuple[str, ...], temperatures: dict[str, float]
) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The case's row of results, and each model's served scores with the labels of the digits scored.
    A digit the service found no strokes in (400) counts as wrong and is left out of the calibration."""
    started = time.perf_counter()
    answers = {model: predict(base_url, model, case.files) for model in models}
    seconds = time.perf_counter() - started
    scored = {model: _scored(answer, case.labels) for model, answer in answers.items()}
    correct = {model: int((served.argmax(axis=1) == labels).sum()) for model, (served, labels) in scored.items()}
    ece = {model: round(expected_calibration_error(served, labels), 2) for model, (served, labels) in scored.items()}
    ece_untempered = {
        model: round(expected_calibration_error(untempered(served, temperatures[model]), labels), 2)
        for model, (served, labels) in scored.items()
    }
    row = {
        "case": case.name,
        "description": case.description,
        "files": len(case.files),
        "correct": correct,
        "accuracy": {model: round(100 * count / len(case.files), 1) for model, count in correct.items()},
        "ece_percent": ece,
        "ece_untempered_percent": ece_untempered,
        "turned_away_percent": {model: round(answer.turned_away(), 1) for model, answer in answers.items()},
        "seconds": round(seconds, 2),
    }
    shown = ", ".join(
        f"{m} {a} % (ECE {ece_untempered[m]:.2f} -> {ece[m]:.2f} %, turned away {row['turned_away_percent'][m]} %)"
        for m, a in row["accuracy"].items()
    )
    print(f"{case.name}: {shown}", file=sys.stderr)
    return row, scored


def _scored(answers: Answers, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scores (N, 10) of the files answered with scores, and their labels."""
    answered = [index for index, scores in enumerate(answers.scores) if scores is not None]
    return np.array([answers.scores[index] for index in answered]).reshape(-1, 10), labels[answered]


def _non_digit_kind(base_url: str, kind: str, files: list[bytes], models: tuple[str, ...]) -> dict:
    answers = {model: predict(base_url, model, files) for model in models}
    row = {
        "kind": kind,
        "description": next(description for name, description, _, _ in NON_DIGIT_KINDS if name == kind),
        "files": len(files),
        "turned_away_percent": {model: round(answer.turned_away(), 1) for model, answer in answers.items()},
        "no_digit_found": {model: answer.verdicts.count(None) for model, answer in answers.items()},
    }
    print(f"non-digits, {kind}: turned away {row['turned_away_percent']}", file=sys.stderr)
    return row


def markdown_table(results: dict, models: tuple[str, ...]) -> str:
    lines = [
        "| case | what the files are | " + " | ".join(f"`{model}`" for model in models) + " |",
        "| --- | --- | " + " | ".join("---" for _ in models) + " |",
    ]
    for row in results["cases"]:
        scores = " | ".join(
            f"{row['accuracy'][model]:.1f} % (ECE {row['ece_untempered_percent'][model]:.2f} -> "
            f"{row['ece_percent'][model]:.2f}, turned away {row['turned_away_percent'][model]:.1f} %)"
            for model in models
        )
        lines.append(f"| {row['case']} | {row['description']} | {scores} |")
    lines += [
        "",
        "| served confidence | " + " | ".join(f"`{model}`: answers, right" for model in models) + " |",
        "| --- | " + " | ".join("---" for _ in models) + " |",
    ]
    bands = {tuple(band["band"]) for bands in results["reliability"].values() for band in bands}
    for lower, upper in sorted(bands):
        shown = " | ".join(_band_cell(results["reliability"][model], (lower, upper)) for model in models)
        lines.append(f"| over {lower:.2f} to {upper:.2f} | {shown} |")
    lines += [
        "",
        "| non-digits | what the files are | " + " | ".join(f"`{model}` turned away" for model in models) + " |",
        "| --- | --- | " + " | ".join("---" for _ in models) + " |",
    ]
    for row in results["non_digits"]:
        shown = " | ".join(f"{row['turned_away_percent'][model]:.1f} %" for model in models)
        lines.append(f"| {row['kind']} | {row['description']} | {shown} |")
    averages = " | ".join(
        f"{np.mean([row['turned_away_percent'][model] for row in results['non_digits']]):.1f} %" for model in models
    )
    lines.append(f"| **average** | | {averages} |")
    return "\n".join(lines)


def _band_cell(bands: list[dict], edges: tuple[float, float]) -> str:
    found = next((band for band in bands if tuple(band["band"]) == edges), None)
    return "none" if found is None else f"{found['answers_percent']:.2f} %, {found['right_percent']:.1f} % right"


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
    parser.add_argument("--non-digits", type=int, default=PICTURES_PER_KIND, help="pictures per non-digit kind")
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
    non_digits = build_kinds(args.non_digits)
    generated = time.perf_counter() - started
    results = run(cases, non_digits, models)
    results.update(
        date=date.today().isoformat(),
        machine=describe_machine(),
        digits_per_case=args.count,
        non_digits_per_kind=args.non_digits,
        selection_seed=SELECTION_SEED,
        seconds_to_generate=round(generated, 1),
    )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_table(results, models))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
