"""Fuzzing the live app from its own /openapi.json with schemathesis, bounded in examples and time.

Every check runs except positive_data_acceptance: the schema says "a non-empty binary file",
which random bytes satisfy, but only a decodable image can be classified, so a 400 for them
is the documented answer rather than a defect.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import running_server

pytestmark = pytest.mark.system
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _schemathesis(
    url: str, *extra: str, max_examples: int, max_seconds: int, workdir: Path
) -> subprocess.CompletedProcess:
    options = {
        "--checks": "all",
        "--exclude-checks": "positive_data_acceptance",
        "--max-examples": str(max_examples),
        "--max-time": str(max_seconds),
        # One worker: schemathesis's workers are threads, and CPython 3.11's ast.parse (hypothesis
        # calls it to describe strategies) is not thread-safe before the fix for gh-106905; two
        # workers failed CI with "AST constructor recursion depth mismatch".
        "--workers": "1",
        "--seed": "20261126",
        "--request-timeout": "10",
        "--generation-database": "none",
    }
    command = [str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--no-color", *extra]
    command += [part for option in options.items() for part in option]
    # Run in a scratch folder: schemathesis keeps a cache of what it found in the working directory.
    return subprocess.run(command, capture_output=True, text=True, timeout=max_seconds + 120, cwd=workdir)


@pytest.fixture(autouse=True)
def _needs_schemathesis():
    if not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[system-test]')")


def test_no_server_errors_and_every_response_as_documented(tmp_path: Path):
    with running_server() as url:
        completed = _schemathesis(url, max_examples=100, max_seconds=60, workdir=tmp_path)
    assert completed.returncode == 0, completed.stdout[-6000:]
    assert " passed" in completed.stdout


def test_with_an_api_key_unauthenticated_requests_are_refused(tmp_path: Path):
    with running_server(api_key="fuzz-key") as url:
        completed = _schemathesis(
            url, "--header", "Authorization: Bearer fuzz-key", max_examples=50, max_seconds=30, workdir=tmp_path
        )
    assert completed.returncode == 0, completed.stdout[-6000:]
