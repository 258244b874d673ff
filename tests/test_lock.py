"""The committed lock is what every install uses: it matches pyproject.toml, the image's
requirements and the Dockerfile follow from it, and this environment holds exactly its versions."""

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

from tests.helpers import REPO_ROOT

_spec = importlib.util.spec_from_file_location("bootstrap", REPO_ROOT / "scripts" / "bootstrap.py")
bootstrap = sys.modules["bootstrap"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bootstrap)

UV = Path(sys.executable).with_name("uv")
LOCKED_TORCH = bootstrap.locked_versions()["torch"]


def test_the_lock_matches_pyproject_toml():
    completed = subprocess.run(
        [UV, "lock", "--locked", "--offline"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, f"uv.lock is out of date with pyproject.toml: run `make lock`\n{completed.stderr}"


def test_the_image_requirements_are_the_locks():
    expected = bootstrap.image_requirements(UV)
    assert (REPO_ROOT / "docker" / "requirements.txt").read_text() == expected, "run `make lock`"


def test_the_image_installs_the_locked_torch():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    [version] = re.findall(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert version.partition("+")[0] == LOCKED_TORCH


def test_torch_is_pinned_to_the_version_the_shipped_models_record():
    for metadata in (REPO_ROOT / "models").glob("*/*/model.json"):
        assert json.loads(metadata.read_text())["torch_version"].partition("+")[0] == LOCKED_TORCH, metadata


def _locked_here(*extras: str) -> dict[str, str]:
    """Each package the lock installs on this interpreter and platform with these extras (none: every
    extra), and its version."""
    every_extra = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    exported = bootstrap.locked_requirements(UV, list(extras or every_extra), hashes=False)
    versions = {}
    for line in exported.splitlines():
        requirement, _, marker = line.partition(" ; ")
        if requirement and not requirement.startswith(("#", " ")) and (not marker or Marker(marker).evaluate()):
            name, _, version = requirement.partition("==")
            versions[canonicalize_name(name)] = version
    return versions


def _installed() -> dict[str, str]:
    return {
        canonicalize_name(distribution.metadata["Name"]): distribution.version
        for distribution in importlib.metadata.distributions()
    }


def _public(version: str) -> str:
    # A torch build from PyTorch's own index carries a label (2.14.1+cpu): the version is the lock's.
    return version.partition("+")[0]


def test_the_test_environment_holds_every_locked_package_of_its_extras():
    installed = _installed()
    missing_or_other = {
        name: (version, installed.get(name))
        for name, version in _locked_here("train", "dev").items()
        if installed.get(name) is None or _public(installed[name]) != version
    }
    assert missing_or_other == {}, "(locked, installed); `make test` installs the lock again after `make clean`"


def test_every_installed_package_the_lock_knows_is_at_its_locked_version():
    installed = _installed()
    other = {
        name: (version, installed[name])
        for name, version in _locked_here().items()
        if name in installed and _public(installed[name]) != version
    }
    assert other == {}
