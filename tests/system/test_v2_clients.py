"""Real Open Inference Protocol clients, unchanged, against the real service: tritonclient and the kserve SDK."""

import ast
import asyncio
import re
import subprocess

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from tests.helpers import REPO_ROOT, png_of, served_version
from tests.system.serving import start_service, wait_until_ready

MNIST_VERSION = served_version("mnist")  # the version requests that name none get

pytestmark = pytest.mark.system

DIGITS = 1000
BATCH = 64


@pytest.fixture(scope="module")
def service():
    process, url = start_service(subprocess.DEVNULL, LOG_LEVEL="warning")
    try:
        wait_until_ready(process, url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def digits(mnist_test_split) -> tuple[np.ndarray, np.ndarray]:
    return mnist_test_split.images[:DIGITS].numpy(), mnist_test_split.labels[:DIGITS].numpy()


@pytest.fixture(scope="module")
def predict_classes(service, digits) -> np.ndarray:
    """What the native /predict answers for the same digits, one upload each."""
    with httpx.Client(base_url=service) as client:
        answers = [
            client.post("/predict", params={"model": "mnist"}, files={"file": ("d.png", png_of(image))}).json()
            for image in digits[0]
        ]
    return np.array([answer["class"] for answer in answers])


@pytest.fixture(scope="module")
def triton_client(service):
    client = triton.InferenceServerClient(url=service.removeprefix("http://"))
    yield client
    client.close()


def _triton_classes(client, images: np.ndarray, binary: bool) -> np.ndarray:
    classes = []
    for start in range(0, len(images), BATCH):
        batch = (images[start : start + BATCH].reshape(-1, 784) / np.float32(255)).astype(np.float32)
        tensor = triton.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch, binary_data=binary)
        outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "label")]
        result = client.infer("mnist", [tensor], outputs=outputs)
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (len(batch), 10)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
        classes.append(result.as_numpy("label"))
    return np.concatenate(classes)


def test_tritonclient_sees_a_live_ready_server_and_its_models(triton_client):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("mnist")
    assert triton_client.is_model_ready("mnist", model_version=MNIST_VERSION)
    assert not triton_client.is_model_ready("no-such-model")
    server = triton_client.get_server_metadata()
    assert server["name"] == "mnist-serve"
    assert "binary_tensor_data" in server["extensions"]
    metadata = triton_client.get_model_metadata("mnist")
    assert metadata["versions"] == [MNIST_VERSION]
    assert [(tensor["name"], tensor["datatype"]) for tensor in metadata["inputs"]] == [
        ("input", "FP32"),
        ("image", "UINT8"),
    ]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_classifies_1000_digits_as_predict_does(triton_client, digits, predict_classes, binary):
    images, labels = digits
    classes = _triton_classes(triton_client, images, binary)
    assert (classes == labels).mean() == (predict_classes == labels).mean()
    assert (classes == predict_classes).mean() >= 0.999  # batched and single passes round a little differently


def test_tritonclient_uint8_input_requested_outputs_and_request_id(triton_client, digits):
    images = digits[0][:5]
    tensor = triton.InferInput("image", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    result = triton_client.infer(
        "mnist",
        [tensor],
        outputs=[triton.InferRequestedOutput("label")],
        request_id="five-digits",
        model_version=MNIST_VERSION,
    )
    assert result.as_numpy("label").tolist() == [7, 2, 1, 0, 4]
    assert result.as_numpy("probabilities") is None
    response = result.get_response()
    assert (response["id"], response["model_name"], response["model_version"]) == (
        "five-digits",
        "mnist",
        MNIST_VERSION,
    )


def test_tritonclient_reports_the_servers_error_message(triton_client):
    tensor = triton.InferInput("input", [1, 784], "FP32")
    tensor.set_data_from_numpy(np.full((1, 784), 255, dtype=np.float32))
    with pytest.raises(triton.InferenceServerException, match=r"outside \[0, 1\]"):
        triton_client.infer("mnist", [tensor])
    with pytest.raises(triton.InferenceServerException, match="no model named 'nope'"):
        triton_client.infer("nope", [tensor])


def test_the_kserve_sdk_checks_health_and_classifies_binary_tensors(service, digits, predict_classes):
    images, labels = digits

    async def classify() -> tuple[list[bool], np.ndarray]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        try:
            health = [
                await client.is_server_live(service),
                await client.is_server_ready(service),
                await client.is_model_ready(service, "mnist"),
            ]
            classes = []
            for start in range(0, len(images), BATCH):
                batch = (images[start : start + BATCH].reshape(-1, 784) / np.float32(255)).astype(np.float32)
                tensor = InferInput("input", list(batch.shape), "FP32")
                tensor.set_data_from_numpy(batch, binary_data=True)
                response = await client.infer(service, InferRequest("mnist", infer_inputs=[tensor]), "mnist")
                by_name = {output.name: output.as_numpy() for output in response.outputs}
                classes.append(by_name["label"])
            return health, np.concatenate(classes)
        finally:
            await client.close()

    health, classes = asyncio.run(classify())
    assert health == [True, True, True]
    assert (classes == labels).mean() == (predict_classes == labels).mean()


# The distribution each import of the README's examples comes from.
_DISTRIBUTION_OF_MODULE = {"numpy": "numpy", "tritonclient": "tritonclient", "PIL": "pillow"}


def test_the_readmes_tritonclient_example_runs_as_written(service, capsys, monkeypatch):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## The Open Inference Protocol (V2)", 1)[1]
    [install] = re.findall(r"^pip install (.+)$", section.split("```python\n", 1)[0], re.MULTILINE)
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "127.0.0.1:8000" in example
    # What the README tells a user to install covers every module the example imports.
    tree = ast.parse(example)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported = {module.split(".")[0] for module in imported}
    installed = {re.split(r"[\[=<>]", word.strip("\"'"))[0].lower() for word in install.split()}
    assert {_DISTRIBUTION_OF_MODULE[module] for module in imported} <= installed, install
    monkeypatch.chdir(REPO_ROOT)
    exec(compile(example.replace("127.0.0.1:8000", service.removeprefix("http://")), "README.md", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out
    assert printed.startswith("[7] [[0. 0. 0. 0. 0. 0. 0. 1. 0. 0.]]")
