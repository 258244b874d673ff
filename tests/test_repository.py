"""The model repository: scanning the folders, choosing versions, refusing bad ones, swapping on a poll."""

import asyncio
import json
import os
import shutil
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from app.errors import ModelNotFoundError
from app.inference.classifier import ModelLoadError
from app.inference.pipeline import InferenceCore
from app.repository.gate import CanarySet, Gate
from app.repository.layout import RepositoryError, scan_repository
from app.repository.registry import ModelRepository
from app.settings import Settings, VersionPolicies
from mnist_core.files import file_sha256
from tests.conftest import make_client
from tests.helpers import REPO_ROOT

SHIPPED_VERSION = REPO_ROOT / "models" / "mnist-reference" / "1"
GATE = Gate(CanarySet.load(), Settings().gate_min_accuracy, Settings().gate_max_accuracy_drop)


def _add_version(root: Path, model: str, version: int | str) -> Path:
    folder = root / model / str(version)
    shutil.copytree(SHIPPED_VERSION, folder)
    return folder


def _repository(root: Path, default: str = "mnist", policies: str | None = None) -> ModelRepository:
    policy = VersionPolicies.parse(policies) if policies else None
    repository = ModelRepository(lambda: scan_repository(root), "cpu", default, GATE, policy)
    repository.refresh()
    return repository


def _served(repository: ModelRepository) -> dict[str, list[int]]:
    return {name: list(model.versions) for name, model in repository.served.items()}


def _break_shape(folder: Path) -> None:
    """Weights of the wrong shape, with a metadata file whose sha256 matches them."""
    weights = folder / "model.pt"
    torch.save({"fc1.weight": torch.zeros(50, 100)}, weights)
    _record_sha256(folder)


def _record_sha256(folder: Path) -> None:
    metadata = json.loads((folder / "model.json").read_text())
    metadata["weights"]["sha256"] = file_sha256(folder / "model.pt")
    (folder / "model.json").write_text(json.dumps(metadata))


def test_scan_lists_model_and_version_folders_and_skips_the_rest(tmp_path: Path):
    _add_version(tmp_path, "mnist", 1)
    _add_version(tmp_path, "mnist", 10)
    _add_version(tmp_path, "other.model_2-b", 3)
    for skipped in ("mnist/.4.partial", "mnist/latest", "mnist/0", "mnist/007", ".hidden/1", "bad name/1"):
        (tmp_path / skipped).mkdir(parents=True)
    (tmp_path / "README.md").write_text("notes")
    found = [(folder.model, folder.version) for folder in scan_repository(tmp_path)]
    assert found == [("mnist", 1), ("mnist", 10), ("other.model_2-b", 3)]


def test_a_missing_repository_is_an_error_naming_the_setting(tmp_path: Path):
    with pytest.raises(RepositoryError, match=r"model repository not found \(set MODEL_REPOSITORY"):
        scan_repository(tmp_path / "absent")


def test_each_model_serves_its_newest_version_by_default(tmp_path: Path):
    for version in (1, 2, 10):
        _add_version(tmp_path, "mnist", version)
    _add_version(tmp_path, "mnist-reference", 1)
    repository = _repository(tmp_path)
    assert _served(repository) == {"mnist": [10], "mnist-reference": [1]}
    assert repository.resolve(None, None).info.version == 10
    assert repository.resolve("mnist-reference", "1").info.name == "mnist-reference"


@pytest.mark.parametrize(
    ("policies", "served"),
    [("mnist=2", {"mnist": [2]}), ("mnist=1+10", {"mnist": [1, 10]}), ("mnist=all", {"mnist": [1, 2, 10]})],
)
def test_model_versions_pins_or_serves_all(tmp_path: Path, policies: str, served: dict):
    for version in (1, 2, 10):
        _add_version(tmp_path, "mnist", version)
    repository = _repository(tmp_path, policies=policies)
    assert _served(repository) == served
    assert repository.resolve("mnist", None).info.version == max(served["mnist"])


def test_unknown_models_and_versions_are_not_found(tmp_path: Path):
    _add_version(tmp_path, "mnist", 1)
    repository = _repository(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"no model named 'nope' is served; served models: mnist"):
        repository.resolve("nope", None)
    for version in ("2", "0", "01", "-1", "abc", "1" * 40, "\N{SUPERSCRIPT ONE}", "\N{ARABIC-INDIC DIGIT ONE}"):
        with pytest.raises(ModelNotFoundError, match="has no version"):
            repository.resolve("mnist", version)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda folder: (folder / "model.json").unlink(), "no model.json beside it"),
        (lambda folder: (folder / "model.pt").unlink(), "weights file not found"),
        (lambda folder: (folder / "model.pt").write_bytes(b"half"), "does not match"),
        (_break_shape, "expected a state_dict with keys"),
    ],
    ids=["missing-metadata", "missing-weights", "half-copied", "wrong-shape"],
)
def test_a_broken_newest_version_is_refused_and_the_previous_one_serves(tmp_path: Path, damage, reason):
    _add_version(tmp_path, "mnist", 1)
    damage(_add_version(tmp_path, "mnist", 2))
    repository = _repository(tmp_path)
    assert _served(repository) == {"mnist": [1]}
    [refusal] = repository.refusals["mnist"]
    assert refusal.version == 2
    assert reason in refusal.reason


def test_a_half_copied_version_is_served_once_the_copy_completes(tmp_path: Path):
    _add_version(tmp_path, "mnist", 1)
    second = _add_version(tmp_path, "mnist", 2)
    complete = (second / "model.pt").read_bytes()
    (second / "model.pt").write_bytes(complete[: len(complete) // 2])
    repository = _repository(tmp_path)
    assert _served(repository) == {"mnist": [1]}
    (second / "model.pt").write_bytes(complete)
    repository.refresh()
    assert _served(repository) == {"mnist": [2]}
    assert repository.refusals == {}


def test_removing_a_version_folder_stops_serving_it(tmp_path: Path):
    _add_version(tmp_path, "mnist", 1)
    second = _add_version(tmp_path, "mnist", 2)
    repository = _repository(tmp_path)
    shutil.rmtree(second)
    repository.refresh()
    assert _served(repository) == {"mnist": [1]}


def test_a_version_rewritten_into_something_broken_keeps_serving_what_it_loaded(tmp_path: Path):
    folder = _add_version(tmp_path, "mnist", 1)
    repository = _repository(tmp_path)
    loaded = repository.resolve("mnist", "1")
    _break_shape(folder)
    repository.refresh()
    assert repository.resolve("mnist", "1") is loaded
    assert "expected a state_dict with keys" in repository.refusals["mnist"][0].reason


def test_unchanged_versions_are_not_loaded_again(tmp_path: Path):
    _add_version(tmp_path, "mnist", 1)
    repository = _repository(tmp_path)
    before = repository.resolve("mnist", None)
    repository.refresh()
    assert repository.resolve("mnist", None) is before


def test_a_lookup_keeps_its_version_across_a_swap(tmp_path: Path):
    """What a request looked up stays usable while a refresh replaces it."""
    _add_version(tmp_path, "mnist", 1)
    repository = _repository(tmp_path)
    in_flight = repository.resolve(None, None)
    _add_version(tmp_path, "mnist", 2)
    repository.refresh()
    assert repository.resolve(None, None).info.version == 2
    assert in_flight.info.version == 1
    assert in_flight.probabilities_of_inputs(np.zeros((1, 784), dtype=np.float32)).shape == (1, 10)


def test_startup_fails_with_the_reason_when_the_default_model_cannot_be_served(tmp_path: Path):
    _break_shape(_add_version(tmp_path, "mnist", 1))
    _add_version(tmp_path, "mnist-reference", 1)
    with pytest.raises(ModelLoadError, match="expected a state_dict with keys"), make_client(model_repository=tmp_path):
        pass
    absent = make_client(model_repository=tmp_path, default_model="absent")
    with pytest.raises(ModelLoadError, match="no version of model 'absent' found"), absent:
        pass


def test_the_service_picks_up_new_versions_when_polling(tmp_path: Path):
    _add_version(tmp_path, "mnist", 1)
    with make_client(model_repository=tmp_path, model_poll_seconds=0.05) as client:
        assert (
            client.post("/predict", files={"file": ("7.png", (REPO_ROOT / "samples/7.png").read_bytes())}).json()[
                "version"
            ]
            == 1
        )
        staging = tmp_path / "mnist" / ".2.partial"
        shutil.copytree(SHIPPED_VERSION, staging)
        os.rename(staging, tmp_path / "mnist" / "2")  # how the training CLI publishes a version
        deadline = time.monotonic() + 10
        while client.get("/model").json()["version"] != 2:
            assert time.monotonic() < deadline, "version 2 was not picked up"
            time.sleep(0.05)
        index = client.get("/models").json()
        assert index["default_model"] == "mnist"
        [model] = index["models"]
        assert (model["name"], model["default_version"], model["refused"]) == ("mnist", 2, [])
        assert [version["version"] for version in model["versions"]] == [2]


def _resident_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident size from Linux's /proc")
def test_five_hundred_version_swaps_leave_nothing_behind(tmp_path: Path):
    """Each swap loads version 2 afresh or drops it; what a version held must go with it."""
    _add_version(tmp_path, "mnist", 1)
    removed = tmp_path / "removed-2"
    shutil.copytree(_add_version(tmp_path, "mnist", 2), removed)
    repository = _repository(tmp_path)
    repository.refresh()
    resident_after_warm_up = 0.0
    for swap in range(1, 501):
        if swap % 2:
            shutil.rmtree(tmp_path / "mnist" / "2")
        else:
            shutil.copytree(removed, tmp_path / "mnist" / "2")
        repository.refresh()
        assert _served(repository)["mnist"] == ([1] if swap % 2 else [2])
        if swap == 20:
            resident_after_warm_up = _resident_mib()
    # The TorchScript graph each load used to build stayed behind after its version left.
    assert _resident_mib() - resident_after_warm_up < 10


def test_a_version_that_leaves_service_is_freed_even_after_serving_requests(tmp_path: Path):
    """The core keeps a micro-batcher per version; it must not keep the version itself."""
    _add_version(tmp_path, "mnist", 1)
    _add_version(tmp_path, "mnist", 2)
    repository = _repository(tmp_path)
    repository.refresh()
    core = InferenceCore(repository, max_image_pixels=4096 * 4096, unsure_below=0.8)
    classifier = core.resolve("mnist", None)
    result = asyncio.run(core.classify_inputs(classifier, np.zeros((1, 784), dtype=np.float32)))
    assert result.probabilities.shape == (1, 10)
    left = weakref.ref(classifier)
    del classifier, result
    shutil.rmtree(tmp_path / "mnist" / "2")
    repository.refresh()
    assert _served(repository)["mnist"] == [1]
    # Freed at once, not at the next full collection: neither a reference nor a cycle holds it.
    assert left() is None, "something still holds version 2 after it left service"
