"""The README stays true to the code: every setting and metric is documented there."""

import json
import re
import shlex
import shutil
import subprocess

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import app.observability.metrics  # noqa: F401 (registers the service's metrics)
from app.settings import Settings, setting_variables
from tests.helpers import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_with_its_default():
    defaults = Settings()
    for spec_name, variable in zip(Settings.model_fields, setting_variables(), strict=True):
        row = next((line for line in README.splitlines() if line.startswith(f"| `{variable}` |")), None)
        assert row is not None, f"{variable} is not in the README's settings table"
        default = getattr(defaults, spec_name)
        shown = "unset" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        assert f"`{shown}`" in row, f"{variable}: the README does not show the default {shown!r}"


def test_every_metric_is_in_the_readme():
    exposition = generate_latest(REGISTRY).decode()
    names = {
        family.name
        for family in text_string_to_metric_families(exposition)
        if family.name.startswith("mnist_") and not family.name.endswith("_created")  # timestamps, not metrics
    }
    assert len(names) == 13
    for name in names:
        assert f"`{name}" in README, f"metric {name} is not documented in the README"


def _curl_examples() -> list[str]:
    """Every `curl` line of the README's shell blocks, as a user would paste it."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README, re.MULTILINE | re.DOTALL)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.startswith("curl ")]


def test_the_readme_shows_its_curl_examples():
    assert len(_curl_examples()) >= 2


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("command", _curl_examples())
def test_each_curl_example_of_the_readme_runs_as_written(live_url, command):
    # As written, but for the address: this server listens on a free port of its own.
    assert "http://127.0.0.1:8000/" in command
    shell_words = shlex.split(command.replace("http://127.0.0.1:8000", live_url))
    completed = subprocess.run(shell_words, cwd=REPO_ROOT, capture_output=True, check=False, timeout=30)
    assert completed.returncode == 0, completed.stderr
    answer = json.loads(completed.stdout)
    predictions = answer.get("predictions", [answer])
    # Each names the digit its sample file is (samples/7.png is a 7).
    files = re.findall(r"=@samples/(\d)\.png", command)
    assert [prediction["class"] for prediction in predictions] == [int(digit) for digit in files], answer
