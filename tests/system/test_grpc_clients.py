"""Real Open Inference Protocol gRPC clients, unchanged, against `python -m app` with two workers:
tritonclient.grpc and kserve's InferenceGRPCClient.

Each client runs in a process of its own: both register protobuf's `inference.*` names in the
global pool, so neither can be imported beside the other (or beside kserve's REST client, which
tests/system/test_v2_clients.py imports). A client script writes its answers as .npy files here.
"""

import json
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import REPO_ROOT, served_version
from tests.system.serving import start_service, wait_until_ready

pytestmark = pytest.mark.system

DIGITS = 1000
LARGE_BATCH = 2000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, str]]:
    """The service's HTTP base URL and its gRPC address."""
    grpc_port = _free_port()
    process, url = start_service(subprocess.DEVNULL, LOG_LEVEL="warning", WORKERS="2", GRPC_PORT=str(grpc_port))
    try:
        wait_until_ready(process, url)
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def inputs(mnist_test_split) -> np.ndarray:
    """The first 2,000 test digits as the FP32 input tensor [N, 784] in [0, 1]."""
    images = mnist_test_split.images[:LARGE_BATCH].numpy().reshape(-1, 784)
    return (images / np.float32(255)).astype(np.float32)


def _run_client(script: str, workdir: Path, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    for name, array in arrays.items():
        np.save(workdir / f"{name}.npy", array)
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=workdir, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return {path.stem: np.load(path) for path in workdir.glob("out_*.npy")}


def _rest_classes(url: str, rows: np.ndarray) -> np.ndarray:
    """What V2 REST answers for the same rows, in one binary request."""
    tensor = {"name": "input", "datatype": "FP32", "shape": [len(rows), 784]}
    tensor["parameters"] = {"binary_data_size": rows.nbytes}
    header = json.dumps({"inputs": [tensor], "outputs": [{"name": "label"}]}).encode()
    answer = httpx.post(
        f"{url}/v2/models/mnist/infer",
        content=header + rows.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return np.asarray(answer.json()["outputs"][0]["data"])


TRITON_SCRIPT = """
    import numpy as np
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(ADDRESS)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mnist") and client.is_model_ready("mnist", VERSION)
    assert not client.is_model_ready("no-such-model")
    assert client.get_server_metadata().name == "mnist-serve"
    assert client.get_model_metadata("mnist").versions == [VERSION]
    rows = np.load("rows.npy")

    def classes(batch, request_id=""):
        tensor = triton.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        result = client.infer("mnist", [tensor], request_id=request_id)
        assert result.get_response().id == request_id
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (len(batch), 10)
        return result.as_numpy("label")

    first = rows[:1000]
    np.save("out_batches.npy", np.concatenate([classes(first[start : start + 64]) for start in range(0, 1000, 64)]))
    np.save("out_large.npy", classes(rows, request_id="two-thousand"))
    try:
        client.infer("mnist", [triton.InferInput("input", [1, 28, 28], "FP32")])
    except InferenceServerException as error:
        np.save("out_error.npy", np.array([error.status(), error.message()]))
"""

KSERVE_SCRIPT = """
    import asyncio
    import numpy as np
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    async def main():
        client = InferenceGRPCClient(ADDRESS, retries=0)
        assert await client.is_server_live() and await client.is_server_ready()
        assert await client.is_model_ready("mnist")
        rows = np.load("rows.npy")
        labels = []
        for start in range(0, len(rows), 100):
            tensor = InferInput("input", [100, 784], "FP32")
            tensor.set_data_from_numpy(rows[start : start + 100], binary_data=True)
            response = await client.infer(InferRequest(model_name="mnist", infer_inputs=[tensor], request_id="k"))
            assert response.id == "k"
            output = {output.name: output for output in response.outputs}["label"]
            labels.append(output.as_numpy())
        np.save("out_kserve.npy", np.concatenate(labels))
        await client.close()

    asyncio.run(main())
"""


def test_tritonclient_grpc_classifies_as_rest_does_in_batches_and_2000_rows_at_once(service, inputs, tmp_path):
    url, address = service
    answers = script = TRITON_SCRIPT.replace("ADDRESS", repr(address)).replace("VERSION", repr(served_version("mnist")))
    answers = _run_client(script, tmp_path, rows=inputs)
    expected = _rest_classes(url, inputs)
    assert answers["out_batches"].tolist() == expected[:DIGITS].tolist()
    assert answers["out_large"].tolist() == expected.tolist()
    status, message = answers["out_error"].tolist()
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert message.startswith("input 'input' must have shape ['N', 784]")


def test_kserve_grpc_client_classifies_as_rest_does(service, inputs, tmp_path):
    url, address = service
    answers = _run_client(KSERVE_SCRIPT.replace("ADDRESS", repr(address)), tmp_path, rows=inputs[:DIGITS])
    assert answers["out_kserve"].tolist() == _rest_classes(url, inputs[:DIGITS]).tolist()


def test_the_readmes_grpc_example_runs_as_written(service, tmp_path):
    _, address = service
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Over gRPC", 1)[1]
    [install] = re.findall(r"^pip install (.+)$", section.split("```python\n", 1)[0], re.MULTILINE)
    assert '"tritonclient[grpc]"' in install
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "127.0.0.1:8001" in example
    completed = subprocess.run(
        [sys.executable, "-c", example.replace("127.0.0.1:8001", address)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    expected = section.split("```text\n", 1)[1].split("```", 1)[0]
    assert completed.stdout == expected
