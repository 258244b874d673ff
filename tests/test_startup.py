"""Startup: the weights are loaded safely and checked, or the server refuses to start, clearly."""

import json
import os
import pickle
import random
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.inference.classifier import DigitClassifier, ModelLoadError, load_classifier
from app.settings import SERVER_SETTINGS, Settings, SettingsError, variable
from mnist_core.files import metadata_path_for
from tests.conftest import SHIPPED_WEIGHTS, make_client
from tests.helpers import REPO_ROOT


class _CodeRunningPayload:
    """Unpickling this would create the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _shipped_copy(folder: Path, with_metadata: bool = True) -> Path:
    weights = folder / "model.pt"
    shutil.copy(SHIPPED_WEIGHTS, weights)
    if with_metadata:
        shutil.copy(metadata_path_for(SHIPPED_WEIGHTS), metadata_path_for(weights))
    return weights


def _load(weights: Path, device: str = "cpu", **options) -> DigitClassifier:
    """Load as MODEL_PATH does: a single file, whose metadata may be absent."""
    return load_classifier(weights, device, name="mnist", version=1, require_metadata=False, **options)


def test_missing_weights(tmp_path: Path):
    with pytest.raises(ModelLoadError, match=r"model\.pt: weights file not found"):
        _load(tmp_path / "model.pt")


# Seeds whose random bytes make torch.load fail in each way seen: UnpicklingError, IndexError,
# KeyError, UnicodeDecodeError.
@pytest.mark.parametrize("seed", [0, 2, 20, 195])
def test_corrupt_weights(tmp_path: Path, seed):
    weights = tmp_path / "model.pt"
    weights.write_bytes(random.Random(seed).randbytes(4096))
    with pytest.raises(ModelLoadError, match="not a loadable weights-only state_dict"):
        _load(weights)


def test_truncated_weights(tmp_path: Path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(SHIPPED_WEIGHTS.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="not a loadable weights-only state_dict"):
        _load(weights)


@pytest.mark.parametrize(
    ("state_dict", "fragment"),
    [
        (
            {
                "fc1.weight": torch.zeros(50, 100),
                "fc1.bias": torch.zeros(50),
                "fc2.weight": torch.zeros(10, 50),
                "fc2.bias": torch.zeros(10),
            },
            "fc1.weight has shape (50, 100)",
        ),
        (
            {
                "fc1.weight": torch.zeros(50, 784),
                "fc1.bias": torch.zeros(50),
                "fc2.weight": torch.zeros(12, 50),
                "fc2.bias": torch.zeros(12),
            },
            "fc2.weight has shape (12, 50)",
        ),
        ({"weight": torch.zeros(10, 784)}, "expected a state_dict with keys"),
        ([1, 2, 3], "expected a state_dict with keys"),
    ],
    ids=["wrong-input-size", "wrong-classes", "wrong-keys", "not-a-dict"],
)
def test_wrongly_shaped_weights(tmp_path: Path, state_dict, fragment):
    weights = tmp_path / "model.pt"
    torch.save(state_dict, weights)
    with pytest.raises(ModelLoadError, match=re.escape(fragment)):
        _load(weights)


@pytest.mark.parametrize("container", ["torch-zip", "plain-pickle"])
def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path: Path, container: str):
    marker = tmp_path / "code-ran.marker"
    weights = tmp_path / "model.pt"
    payload = {"fc1.weight": _CodeRunningPayload(marker)}
    if container == "torch-zip":
        torch.save(payload, weights)
    else:
        weights.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    with pytest.raises(ModelLoadError, match="not a loadable weights-only state_dict"):
        _load(weights)
    assert not marker.exists()


def test_sha256_mismatch_refuses_to_start_unless_allowed(tmp_path: Path):
    weights = _shipped_copy(tmp_path)
    metadata = json.loads(metadata_path_for(weights).read_text())
    metadata["weights"]["sha256"] = "0" * 64
    metadata_path_for(weights).write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="does not match 0000"):
        _load(weights)
    assert _load(weights, allow_sha256_mismatch=True).info.sha256 != "0" * 64


def test_a_single_file_without_metadata_still_loads(tmp_path: Path):
    classifier = _load(_shipped_copy(tmp_path, with_metadata=False))
    assert classifier.info.metadata is None
    assert classifier.info.test_accuracy is None


def test_a_repository_version_without_metadata_is_refused(tmp_path: Path):
    """In a repository the sha256 in model.json is what tells a complete copy from a partial one."""
    weights = _shipped_copy(tmp_path, with_metadata=False)
    with pytest.raises(ModelLoadError, match=r"no model\.json beside it to verify its sha256"):
        load_classifier(weights, "cpu", name="mnist", version=1)


def test_unreadable_metadata_is_refused(tmp_path: Path):
    weights = _shipped_copy(tmp_path)
    metadata_path_for(weights).write_text("{ not json")
    with pytest.raises(ModelLoadError, match="unreadable metadata"):
        _load(weights)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda_is_refused():
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        _load(SHIPPED_WEIGHTS, device="cuda")


def test_lifespan_refuses_to_start_with_bad_weights(tmp_path: Path):
    with pytest.raises(ModelLoadError), make_client(model_path=tmp_path / "absent.pt"):
        pass


@pytest.mark.parametrize(
    ("environment", "expected_line"),
    [
        ({"MODEL_PATH": "no/such/weights.pt"}, "cannot start: no/such/weights.pt: weights file not found"),
        ({"DEVICE": "cuda:7"}, "cannot start: cannot serve models/mnist-cnn/1/model.pt on DEVICE=cuda:7"),
        ({"MAX_BATCH": "many"}, "error: MAX_BATCH='many' is not a valid int"),
        ({"MAX_CONCURRENCY": "64"}, "error: MAX_CONCURRENCY is no longer a setting: uploads are bounded by the bytes"),
    ],
    ids=["missing-weights", "missing-device", "bad-setting", "retired-setting"],
)
def test_the_real_server_exits_non_zero_with_one_clear_line(environment, expected_line):
    if "DEVICE" in environment and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    completed = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=REPO_ROOT,
        # One worker fails in its lifespan, before it binds, so two suites at once never meet on the port.
        env={**os.environ, "PORT": "18765", "GRPC_PORT": "0", "WORKERS": "1", **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    matching = [line for line in completed.stderr.splitlines() if expected_line in line]
    assert len(matching) == 1, completed.stderr


def test_a_grpc_port_another_process_holds_stops_the_start_with_one_clear_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        completed = subprocess.run(
            [sys.executable, "-m", "app"],
            cwd=REPO_ROOT,
            env={**os.environ, "PORT": "18766", "GRPC_PORT": str(port), "WORKERS": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    expected = f"cannot start: cannot listen for gRPC on 127.0.0.1:{port} (GRPC_PORT)"
    assert len([line for line in completed.stderr.splitlines() if expected in line]) == 1, completed.stderr


@pytest.mark.parametrize(
    ("environment", "expected_line"),
    [
        ({"HOST": "127.0.0.2", "PORT": "9000"}, "error: HOST, PORT are read by `python -m app`'s server only"),
        ({"LINGER_SECONDS": "1"}, "error: LINGER_SECONDS is read by `python -m app`'s server only"),
        ({"MAX_BATCH": "many"}, "error: MAX_BATCH='many' is not a valid int"),
    ],
    ids=["server-address", "server-defence", "bad-setting"],
)
def test_uvicorn_on_its_own_refuses_settings_it_would_ignore_with_one_clear_line(environment, expected_line):
    server_variables = {variable(name) for name in SERVER_SETTINGS}
    inherited = {name: value for name, value in os.environ.items() if name not in server_variables}
    completed = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"],
        cwd=REPO_ROOT,
        env={**inherited, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    [error] = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert expected_line in error


def test_settings_are_read_from_the_environment_only_by_from_env(monkeypatch):
    monkeypatch.setenv("MAX_BATCH", " 8 ")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("MODEL_PATH", "")  # empty: unset, as the README says
    monkeypatch.setenv("PORT", "  ")  # only blanks: unset too
    assert Settings().max_batch == 64
    read = Settings.from_env()
    assert (read.max_batch, read.log_level, read.model_path, read.port) == (8, "debug", None, 8000)
    assert read.server_settings_given() == []
    monkeypatch.setenv("BODY_TIMEOUT_SECONDS", "0")
    with pytest.raises(SettingsError, match=r"^BODY_TIMEOUT_SECONDS='0' must be at least 0.001$"):
        Settings.from_env()
