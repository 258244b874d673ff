"""New weights served without a restart: a version copied in under load, then a broken one, with two workers."""

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from mnist_core.files import file_sha256, version_numbers
from tests.helpers import REPO_ROOT
from tests.system.serving import start_service, stop_service, wait_until_ready

pytestmark = pytest.mark.system

SHIPPED = REPO_ROOT / "models"
DIGIT = (REPO_ROOT / "samples" / "7.png").read_bytes()
LOAD_THREADS = 4
ANSWERS_PER_VERSION = 20  # the load's answers from a version before the test moves on
WAIT_SECONDS = 60


class Load:
    """Clients asking /predict and /predict/batch on fresh connections, so both workers answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.versions: Counter = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(index,)) for index in range(LOAD_THREADS)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                if index % 2:
                    response = httpx.post(f"{self.url}/predict", files={"file": ("7.png", DIGIT)}, timeout=10)
                    answers = [response.json()] if response.status_code == 200 else []
                else:
                    files = [("files", (f"{n}.png", DIGIT)) for n in range(4)]
                    response = httpx.post(f"{self.url}/predict/batch", files=files, timeout=10)
                    answers = response.json()["predictions"] if response.status_code == 200 else []
            except httpx.HTTPError as error:
                self.failures.append(f"{type(error).__name__}: {error}")
                continue
            if response.status_code != 200:
                self.failures.append(f"{response.status_code}: {response.text[:200]}")
            versions = {(answer["model"], answer["version"]) for answer in answers}
            if len(versions) > 1:
                self.failures.append(f"one request answered by several versions: {versions}")
            self.versions.update(versions)


def _gauge(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _versions_answering(url: str, requests: int = 60) -> set[int]:
    """The versions that answer `requests` predictions, each on a new connection (either worker)."""
    return {httpx.post(f"{url}/predict", files={"file": ("7.png", DIGIT)}).json()["version"] for _ in range(requests)}


def _wrongly_shaped(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {**state_dict, "fc1.weight": torch.zeros(50, 100)}  # a network for 10x10 images, say


def _labels_permuted(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    rows = torch.roll(torch.arange(10), 1)  # each output row moved to the next digit
    return {**state_dict, "fc2.weight": state_dict["fc2.weight"][rows], "fc2.bias": state_dict["fc2.bias"][rows]}


def _zeros(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: torch.zeros_like(value) for key, value in state_dict.items()}


BROKEN_VERSIONS = [
    (3, _wrongly_shaped, "fc1.weight has shape (50, 100), expected (50, 784)"),
    (4, _labels_permuted, "is below GATE_MIN_ACCURACY=90 %"),
    (5, _zeros, "canary accuracy 10.0 % is below GATE_MIN_ACCURACY=90 %"),
]


def _write_broken_version(folder: Path, breakage: Callable[[dict], dict]) -> None:
    """Version 1 with its weights broken, and a model.json whose sha256 matches them."""
    shutil.copytree(SHIPPED / "mnist" / "1", folder)
    state_dict = torch.load(folder / "model.pt", weights_only=True)
    torch.save(breakage(state_dict), folder / "model.pt")
    metadata = json.loads((folder / "model.json").read_text())
    metadata["weights"]["sha256"] = file_sha256(folder / "model.pt")
    (folder / "model.json").write_text(json.dumps(metadata))


def test_a_new_version_is_served_by_every_worker_without_a_failed_request(tmp_path: Path):
    repository = tmp_path / "models"
    shutil.copytree(SHIPPED, repository)
    # Only version 1 to begin with: version 2 (version 1 with its digit detector) arrives under load.
    for newer in version_numbers(repository / "mnist")[1:]:
        shutil.rmtree(repository / "mnist" / str(newer))
    log = (tmp_path / "server.log").open("w")
    process, url = start_service(
        log,
        WORKERS="2",
        MODEL_REPOSITORY=str(repository),
        MODEL_POLL_SECONDS="0.2",
        LOG_FORMAT="json",
        DEFAULT_MODEL="mnist",
    )
    try:
        wait_until_ready(process, url)
        with Load(url) as load:
            _wait_for(lambda: load.versions[("mnist", 1)] >= ANSWERS_PER_VERSION, WAIT_SECONDS, "answers from v1")
            # A plain recursive copy, as an operator would make: for a moment the folder holds
            # a part of the files, which must be refused until the copy is complete.
            shutil.copytree(SHIPPED / "mnist" / "2", repository / "mnist" / "2")
            _wait_for(
                lambda: _gauge(url, "mnist_model_info", model="mnist", version="1") == 0,
                WAIT_SECONDS,
                "every worker on v2",
            )
            seen = load.versions[("mnist", 2)]
            _wait_for(
                lambda: load.versions[("mnist", 2)] >= seen + ANSWERS_PER_VERSION, WAIT_SECONDS, "answers from v2"
            )

            # Each broken version is made outside the repository and moved in whole: a copy of
            # version 1 changed in place is, for a moment, a valid version that a poll could load
            # and keep serving. And so each worker sees only the finished folder and refuses it
            # exactly once (a refusal holds until the files change): two more refusals mean both
            # workers have seen it. The load goes on throughout, answered by version 2.
            for number, breakage, reason in BROKEN_VERSIONS:
                refusals = _gauge(url, "mnist_model_loads_total", model="mnist", outcome="refused")
                _write_broken_version(tmp_path / "staging" / str(number), breakage)
                (tmp_path / "staging" / str(number)).rename(repository / "mnist" / str(number))
                _wait_for(
                    lambda before=refusals: (
                        _gauge(url, "mnist_model_loads_total", model="mnist", outcome="refused") >= before + 2
                    ),
                    WAIT_SECONDS,
                    f"both workers to refuse v{number}",
                )
                [model] = [entry for entry in httpx.get(f"{url}/models").json()["models"] if entry["name"] == "mnist"]
                assert [version["version"] for version in model["versions"]] == [2]
                [refusal] = [entry for entry in model["refused"] if entry["version"] == number]
                assert reason in refusal["reason"]
            seen = load.versions[("mnist", 2)]
            _wait_for(
                lambda: load.versions[("mnist", 2)] >= seen + ANSWERS_PER_VERSION, WAIT_SECONDS, "answers from v2"
            )
        assert load.failures == []
        assert set(load.versions) == {("mnist", 1), ("mnist", 2)}
        assert _versions_answering(url) == {2}

        for number, _, _ in BROKEN_VERSIONS:
            shutil.rmtree(repository / "mnist" / str(number))
        shutil.rmtree(repository / "mnist" / "2")  # roll back: remove the version
        _wait_for(
            lambda: _gauge(url, "mnist_model_info", model="mnist", version="2") == 0,
            WAIT_SECONDS,
            "every worker back on v1",
        )
        assert _versions_answering(url, 20) == {1}
    finally:
        stop_service(process)
        log.close()
    entries = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines() if line.startswith("{")]
    serving = [entry["message"] for entry in entries if entry["message"].startswith("serving mnist version 2")]
    assert len(serving) == 2  # once per worker
    for number, _, _ in BROKEN_VERSIONS:
        refused = [entry for entry in entries if entry["message"].startswith(f"refusing mnist version {number}:")]
        assert len(refused) >= 2  # by each worker (and again if a poll sees the folder half removed)
    access = [entry for entry in entries if entry["logger"] == "mnist.access" and entry.get("version") == 2]
    assert access  # the access log says which version answered
