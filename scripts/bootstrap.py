#!/usr/bin/env python3
"""Set up the project's virtual environment, or an isolated tool's, for the Makefile.

    python3 scripts/bootstrap.py env [--venv .venv] [EXTRA ...]   # the project, editable, with extras
    python3 scripts/bootstrap.py tool NAME REQUIREMENT ...        # a tool alone in .venv-tools/NAME
    python3 scripts/bootstrap.py lock [UV-LOCK-OPTION ...]          # uv.lock anew, and the image's requirements

Standard library only, so plain python3 (3.11 or newer) is the only prerequisite. Installs go
through uv, which this script first installs with pip into .venv-tools/uv, and come from the
committed lock, uv.lock: `uv export --frozen` turns the lock into the requirements of the extras
asked for, with every version exact and every file's sha256, and `uv pip install --require-hashes`
installs exactly those. A fresh clone next month gets the packages of today.

torch is the one choice the machine makes. Its version is the lock's; its build is either the
lock's own file from PyPI (the CUDA build on Linux x86_64, about 5.5 GB installed) or, where
PyTorch's wheel index answers, the same version from there (`--torch-backend auto`: the CPU build
without an NVIDIA GPU, about 0.7 GB, the CUDA build that matches the driver with one). PyTorch's
index serves its own files, whose hashes the lock cannot hold (the lock is made from PyPI), so
that build's torch and torchvision are installed by version from that index, and every other
package, torch's own dependencies too, still comes from the lock.

A lock on each environment (fcntl.flock) lets `make run` and `make test` start together: the
second waits for the first, then installs only what its extras add, keeping the torch build the
first one chose. One stamp per set of extras records the pyproject.toml and uv.lock it installed,
so a changed one installs again.
"""

# Annotations stay unevaluated, so that an older python3 gets main()'s one-line answer, not a TypeError.
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / ".venv-tools"
UV_REQUIREMENT = "uv==0.13.9"
# Answers quickly wherever PyTorch's wheel indexes (CPU and CUDA alike) are reachable.
PYTORCH_INDEX_PROBE = "https://download.pytorch.org/whl/cpu/torch/"
PROBE_TIMEOUT_S = 3
MIN_PYTHON = (3, 11)


class SetupError(Exception):
    """Set-up cannot go on; the message says why and what to do."""


def say(message: str) -> None:
    print(f"[setup] {message}", flush=True)


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (created if needed) until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".bootstrap.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another set-up of {_shown(folder)} to finish ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _run(command: list[str | Path], what: str) -> None:
    # UV_PYTHON_DOWNLOADS: uv uses the python3 that runs this script, never one it downloads.
    environment = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    completed = subprocess.run([str(part) for part in command], cwd=REPO, env=environment, check=False)
    if completed.returncode != 0:
        raise SetupError(f"{what} failed (exit status {completed.returncode}); its output is above")


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _size_gb(folder: Path) -> float:
    """Bytes under `folder`, each hard-linked file once (uv links files from its cache)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            info = os.lstat(os.path.join(root, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total / 1e9


def ensure_uv() -> Path:
    """uv in its own virtual environment, installed with the pip that comes with python3."""
    venv = TOOLS / "uv"
    uv = venv / "bin" / "uv"
    with locked(venv):
        stamp = venv / ".installed"
        if uv.exists() and stamp.exists() and stamp.read_text() == UV_REQUIREMENT:
            return uv
        # Keep the tools out of `git status` without touching the project's .gitignore.
        (TOOLS / ".gitignore").write_text("# Made by scripts/bootstrap.py.\n*\n")
        say(f"installing {UV_REQUIREMENT} (about 20 MB) into {_shown(venv)} with pip")
        _run([sys.executable, "-m", "venv", venv], "creating the virtual environment for uv")
        _run(
            [_venv_python(venv), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", UV_REQUIREMENT],
            f"pip install {UV_REQUIREMENT}",
        )
        stamp.write_text(UV_REQUIREMENT)
    return uv


def create_venv(uv: Path, venv: Path) -> None:
    """A virtual environment for this python3, with pip in it for anyone who wants to add to it."""
    say(f"creating {_shown(venv)} for Python {platform.python_version()} ({sys.executable})")
    _run([uv, "venv", "--quiet", "--seed", "--allow-existing", "--python", sys.executable, venv], "uv venv")


@dataclass(frozen=True)
class TorchPlan:
    backend: str | None  # --torch-backend for PyTorch's index, or None for the lock's own file from PyPI
    description: str  # which build, from where, how large


def installed_version(python: Path, distribution: str) -> str | None:
    script = (
        "import importlib.metadata as m, sys\ntry: print(m.version(sys.argv[1]))\nexcept m.PackageNotFoundError: pass\n"
    )
    completed = subprocess.run([str(python), "-c", script, distribution], capture_output=True, text=True, check=True)
    return completed.stdout.strip() or None


def nvidia_gpu() -> str | None:
    """The first GPU that nvidia-smi lists ('GPU 0: NVIDIA H100 80GB HBM3'), or None."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return None
    try:
        completed = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    gpus = [line.split(" (UUID")[0] for line in completed.stdout.splitlines() if line.startswith("GPU ")]
    return gpus[0] if completed.returncode == 0 and gpus else None


def pytorch_index_unreachable() -> str | None:
    """None when PyTorch's index answers within PROBE_TIMEOUT_S, else why not."""
    request = urllib.request.Request(PYTORCH_INDEX_PROBE, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):  # noqa: S310 (a constant https URL)
            return None
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except urllib.error.URLError as error:
        return str(error.reason)
    except OSError as error:  # a timeout while reading, a reset connection
        return str(error) or type(error).__name__


def locked_versions() -> dict[str, str]:
    """Each package's version in uv.lock (the project's own included)."""
    import tomllib

    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"] if "version" in package}


def torch_plan(python: Path, torch_version: str) -> TorchPlan:
    installed = installed_version(python, "torch")
    if installed is not None and installed.partition("+")[0] == torch_version:
        # '2.14.1+cpu' came from PyTorch's CPU index, '+cu128' from a CUDA one, no label from PyPI:
        # torchvision (the train extra) must come from the same place, built for this torch.
        label = installed.partition("+")[2]
        return TorchPlan(label or None, f"torch {installed} is installed already; keeping it")
    gpu = nvidia_gpu()
    reason = pytorch_index_unreachable()
    cuda_size = "about 3 GB to download (torch and about 20 nvidia-* packages), 5.5 GB installed"
    if reason is None:
        if gpu:
            where = f"the CUDA build that matches this machine's NVIDIA driver ({gpu}), from PyTorch's index"
            return TorchPlan("auto", f"torch {torch_version}: {where}: {cuda_size}")
        where = "the CPU build (no NVIDIA GPU found), from PyTorch's CPU index"
        return TorchPlan("auto", f"torch {torch_version}: {where}: about 0.2 GB to download, 0.7 GB installed")
    unreachable = f"PyTorch's wheel index is out of reach ({PYTORCH_INDEX_PROBE}: {reason})"
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return TorchPlan(None, f"torch {torch_version}: {unreachable}; the lock's wheel, a CPU build on this platform")
    if gpu:
        return TorchPlan(None, f"torch {torch_version}: {unreachable}; the lock's CUDA build for {gpu}: {cuda_size}")
    return TorchPlan(
        None,
        f"torch {torch_version}: {unreachable}, so the lock's wheel from PyPI, which is the CUDA build though no "
        f"NVIDIA GPU was found: {cuda_size} (the CPU build would be 0.7 GB)",
    )


def locked_requirements(uv: Path, extras: list[str], *, without_torch: bool = False, hashes: bool = True) -> str:
    """The lock's requirements for `extras` (none: the service alone), as a pip requirements file,
    one requirement a line with its hashes on continuation lines; without_torch prunes torch,
    torchvision and what only they need (the nvidia-* libraries, triton)."""
    command: list[str | Path] = [uv, "export", "--frozen", "--format", "requirements-txt", "--no-emit-project"]
    command += ["--no-header", "--no-annotate", *(f"--extra={extra}" for extra in extras)]
    command += ["--prune=torch", "--prune=torchvision"] if without_torch else []
    command += [] if hashes else ["--no-hashes"]
    completed = subprocess.run([str(part) for part in command], cwd=REPO, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SetupError(f"uv export failed (uv.lock out of date? run `make lock`): {completed.stderr.strip()}")
    return completed.stdout


def _lock_digest() -> str:
    return "".join(
        f"{name} sha256 {hashlib.sha256((REPO / name).read_bytes()).hexdigest()}\n"
        for name in ("pyproject.toml", "uv.lock")
    )


def setup_env(venv: Path, extras: list[str]) -> None:
    import tomllib  # here, after the version check: Python 3.11 is the first to have it

    known = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    unknown = sorted(set(extras) - set(known))
    if unknown:
        raise SetupError(f"unknown extra {', '.join(unknown)}; pyproject.toml has {', '.join(known)}")
    name = "-".join(extras) or "serve"
    with locked(venv):
        stamp = venv / f".installed-{name}"
        expected = _lock_digest()
        if stamp.exists() and stamp.read_text() == expected:
            return
        started = time.monotonic()
        uv = ensure_uv()
        python = _venv_python(venv)
        if not python.exists():
            create_venv(uv, venv)
        versions = locked_versions()
        plan = torch_plan(python, versions["torch"])
        say(plan.description)
        say(f"installing the locked dependencies of mnist-serve[{','.join(extras)}] from uv.lock with uv")
        requirements = venv / f".locked-{name}.txt"
        requirements.write_text(locked_requirements(uv, extras, without_torch=plan.backend is not None))
        _run([uv, "pip", "install", "--python", python, "--require-hashes", "-r", requirements], "uv pip install")
        if plan.backend is not None:
            # The same versions from PyTorch's index; the lock's own versions constrain anything they pull in.
            constraints = venv / f".constraints-{name}.txt"
            constraints.write_text(locked_requirements(uv, extras, hashes=False))
            wanted = [f"torch=={versions['torch']}"] + (
                ["torchvision==" + versions["torchvision"]] if "train" in extras else []
            )
            command = [uv, "pip", "install", "--python", python, "--torch-backend", plan.backend, "-c", constraints]
            _run([*command, *wanted], "uv pip install torch from PyTorch's index")
        _run([uv, "pip", "install", "--quiet", "--python", python, "--no-deps", "-e", "."], "installing mnist-serve")
        stamp.write_text(expected)
        say(
            f"{_shown(venv)} is ready for '{name}' after {time.monotonic() - started:.0f} s: "
            f"{_size_gb(venv):.1f} GB, torch {installed_version(python, 'torch')}"
        )


IMAGE_REQUIREMENTS = REPO / "docker" / "requirements.txt"
IMAGE_REQUIREMENTS_HEADER = """\
# The Docker image's locked dependencies: the service's own (no extras), from uv.lock, with hashes.
# Made by `make lock` (scripts/bootstrap.py); tests/test_lock.py fails when it is out of date.
# torch and its CUDA libraries are left out: the Dockerfile installs torch itself, at the lock's
# version, as the CPU or CUDA build its build arguments choose.
"""


def _is_torch_build_part(requirement_line: str) -> bool:
    name = requirement_line.split("==", 1)[0]
    return name in ("torch", "triton") or name.startswith(("nvidia-", "cuda-"))


def image_requirements(uv: Path) -> str:
    """docker/requirements.txt as uv.lock says it must be."""
    entries = locked_requirements(uv, []).replace(" \\\n    ", " ").splitlines()
    return IMAGE_REQUIREMENTS_HEADER + "".join(
        line.replace(" --hash", " \\\n    --hash") + "\n" for line in entries if not _is_torch_build_part(line)
    )


def lock(uv_options: list[str]) -> None:
    """Resolve uv.lock again from pyproject.toml, then write the image's requirements from it."""
    uv = ensure_uv()
    _run([uv, "lock", *uv_options], "uv lock")
    # Written beside and renamed into place: a build never reads half a file.
    partial = IMAGE_REQUIREMENTS.with_name(IMAGE_REQUIREMENTS.name + ".partial")
    partial.write_text(image_requirements(uv))
    partial.replace(IMAGE_REQUIREMENTS)
    say(f"wrote uv.lock and {_shown(IMAGE_REQUIREMENTS)}; torch is {locked_versions()['torch']}")


def setup_tool(name: str, requirements: list[str]) -> None:
    """A tool with pinned dependencies of its own (checkov, say) that must not touch .venv."""
    venv = TOOLS / name
    with locked(venv):
        stamp = venv / ".installed"
        expected = "\n".join(requirements) + "\n"
        if stamp.exists() and stamp.read_text() == expected:
            return
        uv = ensure_uv()
        if not _venv_python(venv).exists():
            create_venv(uv, venv)
        say(f"installing {' '.join(requirements)} into {_shown(venv)}")
        command = [uv, "pip", "install", "--quiet", "--python", _venv_python(venv), *requirements]
        _run(command, f"uv pip install {' '.join(requirements)}")
        stamp.write_text(expected)


def main() -> int:
    if sys.version_info < MIN_PYTHON:
        print(
            f"error: {sys.executable} is Python {platform.python_version()}; mnist-serve needs "
            f"{'.'.join(map(str, MIN_PYTHON))} or newer (for example: make PYTHON=python3.12 ...)",
            file=sys.stderr,
        )
        return 2
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    env = commands.add_parser("env", help="the project's virtual environment, with the extras named")
    env.add_argument("--venv", type=Path, default=Path(".venv"), help="where (default: .venv)")
    env.add_argument("extras", nargs="*", help="optional-dependencies of pyproject.toml, e.g. train dev")
    tool = commands.add_parser("tool", help="an isolated virtual environment in .venv-tools/NAME")
    tool.add_argument("name")
    tool.add_argument("requirements", nargs="+")
    relock = commands.add_parser("lock", help="uv.lock anew from pyproject.toml, and docker/requirements.txt from it")
    relock.add_argument("uv_options", nargs=argparse.REMAINDER, help="passed to uv lock, e.g. --upgrade")
    args = parser.parse_args()
    try:
        if args.command == "env":
            setup_env(args.venv if args.venv.is_absolute() else REPO / args.venv, args.extras)
        elif args.command == "lock":
            lock(args.uv_options)
        else:
            setup_tool(args.name, args.requirements)
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
