"""Side-by-side: mnist-serve's /predict against peer model servers, in one run (`make bench-peers`).

Peers: KServe's Python model server (V1 JSON, base64 PNG), TorchServe (Java frontend, Python
worker, a custom handler; 1 worker without batching, and 1 worker with batches of 8 and a 5 ms
delay) and LitServe (multipart). Each is installed in its own venv with CPU torch, cached under
~/.cache/mnist-serve/peers (XDG_CACHE_HOME), and serves models/mnist/1/model.pt through the
service's own network (bench/peers/). Every server runs one worker and one torch thread; the
peers' access logs are off, mnist-serve runs its production settings (access log and metrics on;
what those cost against quiet settings is measured by `make bench`, bench/serve_bench.py).

The load is `wrk -t1 -c8` posting samples/7.png, alternating A B A B A B (--rounds) so drift on a
shared machine weighs on both sides. For KServe and LitServe both servers are up and each run
lasts --seconds after a short warm-up. TorchServe's JVM needs a 10 s warm-up and would take CPU
from the other server while it compiles, so there only one server is up at a time: each run
starts a fresh server, warms it 10 s, then measures. Every run also records the CPU the server's
process tree used (utime + stime from /proc over the run, divided by wall time), and the tables
compare requests/s per server core, which is what the targets are stated in.
Results go to bench/peers_results.json; server logs to bench/.work/peers/.
"""

import argparse
import base64
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from harness import (
    BENCHMARKED_MODEL,
    CONNECTIONS,
    DIGIT,
    MULTIPART_TYPE,
    REPO,
    Server,
    ServerUnavailableError,
    alternate,
    digit_upload,
    failure_line,
    free_port,
    launch,
    measured,
    pair_result,
    report,
    serving,
    start_service,
    wrk,
)
from machine import describe_machine

PEERS_DIR = REPO / "bench" / "peers"
LOGS = REPO / "bench" / ".work" / "peers"
WEIGHTS = REPO / "models" / "mnist" / "1" / "model.pt"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-serve" / "peers"

# The CPU build (no CUDA libraries to download): pip finds it where its config points (local wheels
# on the project's build machines), else on PyTorch's CPU index.
TORCH = "torch==2.13.0+cpu"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Pinned so that reruns and other machines measure the same releases.
PEER_PACKAGES = {
    "kserve": ["kserve==0.21.0"],
    # TorchServe's worker imports yaml without declaring PyYAML.
    "torchserve": ["torchserve==0.12.0", "torch-model-archiver==0.12.0", "pyyaml"],
    # LitServe is FastAPI underneath, which needs python-multipart to parse uploads.
    "litserve": ["litserve==0.2.19", "python-multipart"],
}
COMMON_PACKAGES = ["pillow", "numpy"]
REPORTED_VERSIONS = {
    "kserve": ["kserve", "torch", "fastapi", "uvicorn"],
    "torchserve": ["torchserve", "torch-model-archiver", "torch"],
    "litserve": ["litserve", "torch", "fastapi", "uvicorn"],
}
# Per server core, /predict must reach this multiple of each peer (issue #15).
TARGET_PER_CORE = {"kserve": 1.5, "torchserve": 1.5, "litserve": 2.0}
PEER_TITLES = {
    "kserve": "KServe {kserve} (V1 JSON, base64 PNG)",
    "litserve": "LitServe {litserve} (multipart)",
    "torchserve": "TorchServe {torchserve}",
}
TORCHSERVE_CONFIGS = {
    "1 worker, no batching": {"workers": 1, "batch_size": 1},
    "1 worker, batches of 8 (5 ms)": {"workers": 1, "batch_size": 8},
}
TORCHSERVE_BATCH_DELAY_MS = 5
ASGI_WARMUP_S = 3
TORCHSERVE_WARMUP_S = 10


class PeerUnavailableError(RuntimeError):
    """A peer could not be installed; the run goes on with the others."""


# --- installing the peers ----------------------------------------------------------------------


def run_logged(command: list[str], log: Path) -> bool:
    """Run `command` with its output appended to `log`; whether it succeeded."""
    with log.open("a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode == 0


def ensure_venv(peer: str) -> Path:
    """The python of `peer`'s cached venv, created and installed on first use."""
    packages = [TORCH, *PEER_PACKAGES[peer], *COMMON_PACKAGES]
    key = hashlib.sha256(json.dumps([platform.python_version(), packages]).encode()).hexdigest()[:12]
    venv = CACHE / f"{peer}-{key}"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    CACHE.mkdir(parents=True, exist_ok=True)
    # Another run of this script may be installing the same venv right now.
    with (CACHE / f"{peer}-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return python
        print(f"installing {peer} into {venv} (once; about a minute)", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        log = LOGS / f"install-{peer}.log"
        log.write_text("")
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        # Torch first, from wherever this pip finds the CPU build, else from PyTorch's CPU index;
        # the second install names it again so that no peer's requirement can swap it.
        installed = (
            run_logged([sys.executable, "-m", "venv", str(venv)], log)
            and (run_logged([*pip, TORCH], log) or run_logged([*pip, "--extra-index-url", TORCH_CPU_INDEX, TORCH], log))
            and run_logged([*pip, *packages], log)
        )
        if not installed:
            raise PeerUnavailableError(f"{peer}: install failed ({failure_line(log)}; full log: {log})")
        done.write_text(" ".join(packages) + "\n")
        return python


def versions(python: Path, distributions: list[str]) -> dict[str, str]:
    script = "import importlib.metadata as m, json, sys\nprint(json.dumps({d: m.version(d) for d in sys.argv[1:]}))"
    result = subprocess.run([str(python), "-c", script, *distributions], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def ensure_java() -> str:
    """The version of the `java` on PATH (TorchServe's frontend needs 11+); as root, installs Debian's."""
    if shutil.which("java") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing default-jre-headless for TorchServe", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with (LOGS / "install-java.log").open("w") as out:
            for command in (["apt-get", "update"], ["apt-get", "install", "-y", "default-jre-headless"]):
                subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if shutil.which("java") is None:
        raise PeerUnavailableError("torchserve: needs Java 11+ (Debian: apt-get install default-jre-headless, as root)")
    output = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
    # "17.0.15" and, before Java 9, "1.8.0_392".
    match = re.search(r'version "(?:1\.)?(\d+)[^"]*"', output)
    if match is None or int(match.group(1)) < 11:
        raise PeerUnavailableError(f"torchserve: needs Java 11+, `java -version` says: {output.strip()[:200]}")
    return match.group(0).split('"')[1]


# --- the servers -------------------------------------------------------------------------------


@dataclass
class Workspace:
    """This run's scratch folder: the request bodies, built once, and what the peers import."""

    folder: Path
    multipart: Path
    kserve_json: Path
    python_path: Path


def make_workspace(folder: Path) -> Workspace:
    png = DIGIT.read_bytes()
    kserve_json = folder / "kserve-v1.json"
    kserve_json.write_text(json.dumps({"instances": [{"image": {"b64": base64.b64encode(png).decode()}}]}))
    # The peers import the service's network from mnist_core, and nothing else of the repository
    # (not app/, training/ or tests/, whose names a peer's own imports might meet).
    python_path = folder / "pythonpath"
    python_path.mkdir()
    (python_path / "mnist_core").symlink_to(REPO / "mnist_core")
    return Workspace(folder, digit_upload(), kserve_json, python_path)


def start_mnist_serve(served: str | None) -> Server:
    """`python -m app` with its production settings (the defaults: access log and metrics on),
    loaded at `served` ("model/version") or, with None, at the benchmarked model's newest version."""
    log = LOGS / "mnist-serve.log"
    if served is None:
        return start_service("mnist-serve", log)
    model, version = served.split("/")
    return start_service("mnist-serve", log, DEFAULT_MODEL=model, MODEL_VERSIONS=f"{model}={version}")


def peer_env(work: Workspace) -> dict[str, str]:
    # Unbuffered, so that a peer's last words before it dies are in its log.
    return {"PYTHONPATH": f"{work.python_path}{os.pathsep}{PEERS_DIR}", "PYTHONUNBUFFERED": "1"}


def start_kserve(python: Path, work: Workspace) -> Server:
    port = free_port()
    log = LOGS / "kserve.log"
    command = [
        str(python),
        str(PEERS_DIR / "kserve_server.py"),
        "--weights",
        str(WEIGHTS),
        "--http_port",
        str(port),
        "--workers",
        "1",
        "--enable_grpc",
        "false",
        # KServe's documented switch for its per-request latency log lines.
        "--enable_latency_logging",
        "false",
    ]
    process = launch(command, log, peer_env(work))
    url = f"http://127.0.0.1:{port}/v1/models/mnist:predict"
    return Server(
        "KServe",
        process,
        url,
        "application/json",
        work.kserve_json,
        log,
        answer=lambda reply: reply["predictions"][0]["class"],
    )


def start_litserve(python: Path, work: Workspace) -> Server:
    port = free_port()
    log = LOGS / "litserve.log"
    command = [str(python), str(PEERS_DIR / "litserve_server.py"), "--weights", str(WEIGHTS), "--port", str(port)]
    process = launch(command, log, peer_env(work))
    return Server("LitServe", process, f"http://127.0.0.1:{port}/predict", MULTIPART_TYPE, work.multipart, log)


def build_torchserve_store(python: Path, folder: Path) -> Path:
    """A model store holding mnist.mar: the shipped weights and bench/peers/torchserve_handler.py."""
    store = folder / "model-store"
    store.mkdir()
    archiver = python.parent / "torch-model-archiver"
    command = [
        str(archiver),
        "--model-name",
        "mnist",
        "--version",
        "1.0",
        "--serialized-file",
        str(WEIGHTS),
        "--handler",
        str(PEERS_DIR / "torchserve_handler.py"),
        "--export-path",
        str(store),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PeerUnavailableError(
            f"torchserve: torch-model-archiver failed: {(result.stderr or result.stdout)[-300:]}"
        )
    return store


def start_torchserve(python: Path, work: Workspace, store: Path, workers: int, batch_size: int) -> Server:
    inference, management, metrics = free_port(), free_port(), free_port()
    run = Path(tempfile.mkdtemp(prefix="ts-", dir=store.parent))
    model = {
        "defaultVersion": True,
        "marName": "mnist.mar",
        "minWorkers": workers,
        "maxWorkers": workers,
        "batchSize": batch_size,
        "maxBatchDelay": TORCHSERVE_BATCH_DELAY_MS,
        "responseTimeout": 120,
    }
    config = {
        "inference_address": f"http://127.0.0.1:{inference}",
        "management_address": f"http://127.0.0.1:{management}",
        "metrics_address": f"http://127.0.0.1:{metrics}",
        "model_store": str(store),
        "load_models": "mnist.mar",
        "models": json.dumps({"mnist": {"1.0": model}}),
        # Token auth (on by default since 0.11) and the model-management API are not what is measured,
        # and the per-minute system-metrics collector forks a Python process that only adds noise.
        "disable_token_authorization": "true",
        "enable_model_api": "false",
        "disable_system_metrics": "true",
    }
    config_file = run / "config.properties"
    config_file.write_text("".join(f"{key}={value}\n" for key, value in config.items()))
    log = LOGS / f"torchserve-w{workers}-b{batch_size}.log"
    command = [
        str(python.parent / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--model-store",
        str(store),
        "--ts-config",
        str(config_file),
        "--log-config",
        str(PEERS_DIR / "torchserve-log4j2.xml"),
    ]
    env = {
        **peer_env(work),
        "LOG_LOCATION": str(run),
        "METRICS_LOCATION": str(run),
        # TorchServe keeps its pid file (TMPDIR) and its workers' Unix sockets (TEMP, the JVM's tmpdir)
        # in the temporary folder: one of our own, so that a TorchServe someone else runs here is no bother.
        "TMPDIR": str(run),
        "TEMP": str(run),
    }
    process = launch(command, log, env, cwd=run)
    url = f"http://127.0.0.1:{inference}/predictions/mnist"
    name = f"TorchServe w{workers} b{batch_size}"
    return Server(name, process, url, MULTIPART_TYPE, work.multipart, log)


# --- measuring ---------------------------------------------------------------------------------


def compare_side_by_side(start_peer: Callable[[], Server], args: argparse.Namespace) -> dict:
    """mnist-serve and one peer both up, short warm-up each, then A B per round."""
    with serving(lambda: start_mnist_serve(args.served)) as ours, serving(start_peer) as theirs:
        return alternate(ours, theirs, args.rounds, args.seconds, ASGI_WARMUP_S)


def measure_alone(start: Callable[[], Server], args: argparse.Namespace) -> dict[str, Any]:
    """A fresh server alone on the machine: TorchServe's warm-up, then one measured run."""
    with serving(start) as server:
        wrk(server, TORCHSERVE_WARMUP_S)
        run = wrk(server, args.seconds)
        report(server.name, run)
        return run


def compare_torchserve(python: Path, work: Workspace, args: argparse.Namespace) -> dict:
    """Per round and config: mnist-serve alone, then TorchServe alone (A B1 A B2 ...)."""
    store = build_torchserve_store(python, work.folder)
    runs: dict[str, tuple[list, list]] = {config: ([], []) for config in TORCHSERVE_CONFIGS}
    for _ in range(args.rounds):
        for config, settings in TORCHSERVE_CONFIGS.items():
            ours, theirs = runs[config]
            ours.append(measure_alone(lambda: start_mnist_serve(args.served), args))
            theirs.append(
                measure_alone(lambda settings=settings: start_torchserve(python, work, store, **settings), args)
            )
    return {config: pair_result(ours, theirs) for config, (ours, theirs) in runs.items()}


# --- output ------------------------------------------------------------------------------------


def row(title: str, result: dict[str, Any]) -> str:
    ours, theirs = result["mnist_serve"], result["peer"]
    return (
        f"| {title} | {ours['rps']:,.0f} | {theirs['rps']:,.0f} | {result['ratio']:.2f} | "
        f"{ours['p99_ms']:.1f} / {theirs['p99_ms']:.1f} | {ours['cores']:.2f} / {theirs['cores']:.2f} | "
        f"{ours['rps_per_core']:,.0f} / {theirs['rps_per_core']:,.0f} | {result['ratio_per_core']:.2f} |"
    )


HEADER = (
    "| {peer} | mnist-serve req/s | {short} req/s | mnist-serve ÷ {short} | p99 ms (ours / {short}) | "
    "server cores (ours / {short}) | req/s per server core (ours / {short}) | ÷ per core |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
)


def print_tables(results: dict[str, Any]) -> None:
    peers = results["peers"]
    side_by_side = [name for name in ("kserve", "litserve") if name in peers]
    if side_by_side:
        print("\n" + HEADER.format(peer="peer", short="peer"))
        for name in side_by_side:
            print(row(PEER_TITLES[name].format(**peers[name]["versions"]), peers[name]))
    if "torchserve" in peers:
        print("\n" + HEADER.format(peer="TorchServe config", short="TorchServe"))
        for config, result in peers["torchserve"]["configs"].items():
            print(row(config, result))
    print()
    for name, peer in peers.items():
        target = TARGET_PER_CORE[name]
        title, compared = PEER_TITLES[name].format(**peer["versions"]).split(" (")[0], peer
        if name == "torchserve":
            config, compared = max(peer["configs"].items(), key=lambda item: item[1]["peer"]["rps_per_core"])
            title += f" at its best per core ({config})"
        ratio = compared["ratio_per_core"]
        verdict = "met" if ratio >= target else f"short by {target - ratio:.2f}"
        print(f"target: /predict >= {target}x the req/s per server core of {title}: {ratio:.2f}x, {verdict}")
    for reason in results["failures"].values():
        print(f"not measured: {reason}")


# --- main --------------------------------------------------------------------------------------


def run_peer(name: str, work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    # Java first: no point in a minute of pip for a TorchServe that cannot start.
    java = ensure_java() if name == "torchserve" else None
    python = ensure_venv(name)
    result: dict[str, Any] = {"versions": versions(python, REPORTED_VERSIONS[name])}
    if name == "kserve":
        result.update(compare_side_by_side(lambda: start_kserve(python, work), args))
    elif name == "litserve":
        result.update(compare_side_by_side(lambda: start_litserve(python, work), args))
    else:
        result["versions"]["java"] = java
        result["configs"] = compare_torchserve(python, work, args)
    return result


def own_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("mnist-serve", "torch", "fastapi", "uvicorn")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", nargs="+", choices=list(PEER_PACKAGES), default=list(PEER_PACKAGES))
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds per peer (and per TorchServe config)")
    parser.add_argument("--seconds", type=int, default=5, help="length of each measured wrk run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "peers_results.json")
    parser.add_argument(
        "--served",
        metavar="MODEL/VERSION",
        help=f"the version mnist-serve answers with (default: {BENCHMARKED_MODEL} at its newest); "
        "mnist-reference/1 does the peers' work: the seed's network, no deskew, no detector",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    if args.served is not None and not re.fullmatch(r"[\w.-]+/\d+", args.served):
        parser.error(f"--served takes MODEL/VERSION, such as mnist-reference/1, not {args.served!r}")
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (scripts/system-deps.sh wrk, or apt-get install wrk)", file=sys.stderr)
        return 1
    LOGS.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": describe_machine(),
        "command": shlex.join(["python", "bench/peers_bench.py", *sys.argv[1:]]),
        "load": (
            f"wrk -t1 -c{CONNECTIONS}, {args.rounds} rounds of {args.seconds} s, A/B alternating; KServe and "
            f"LitServe up beside mnist-serve after a {ASGI_WARMUP_S} s warm-up each; TorchServe and mnist-serve "
            f"one at a time, each started fresh and warmed {TORCHSERVE_WARMUP_S} s"
        ),
        "weights": str(WEIGHTS.relative_to(REPO)),
        "mnist_serve_answers_with": args.served or f"{BENCHMARKED_MODEL} at its newest version",
        "image": str(DIGIT.relative_to(REPO)),
        "mnist_serve_versions": own_versions(),
        "peers": {},
        "failures": {},
    }

    def measure_peers() -> None:
        with tempfile.TemporaryDirectory(prefix="mnist-serve-peers-") as folder:
            work = make_workspace(Path(folder))
            for name in args.peers:
                print(f"== {name}", flush=True)
                try:
                    results["peers"][name] = run_peer(name, work, args)
                except (PeerUnavailableError, ServerUnavailableError) as error:
                    if "mnist-serve" in str(error).split(":")[0]:
                        raise
                    print(f"SKIPPED {error}", flush=True)
                    results["failures"][name] = str(error)

    status = measured(measure_peers)
    if status:
        return status
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_tables(results)
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
