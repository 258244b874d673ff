"""The Open Inference Protocol front door: metadata, health, inference in JSON and binary, every error."""

import json
import tracemalloc

import numpy as np
import pytest

from app.protocols.v2.tensors import V2Error, parse_infer_request
from tests.conftest import make_client
from tests.helpers import png_of, served_version

MNIST_VERSION = served_version("mnist")  # the version requests that name none get

INFER = "/v2/models/mnist/infer"


def _json_input(name: str, datatype: str, shape: list, data) -> dict:
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}


def _image_request(pixels: np.ndarray, **extra) -> dict:
    return {**_json_input("image", "UINT8", list(pixels.shape), pixels.reshape(-1).tolist()), **extra}


def _binary_body(header: dict, *tensors: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(tensors), {"Inference-Header-Content-Length": str(len(head))}


def _split_binary_response(response) -> tuple[dict, bytes]:
    length = int(response.headers["inference-header-content-length"])
    return json.loads(response.content[:length]), response.content[length:]


def _error(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


def test_server_metadata_and_health(client):
    assert client.get("/v2").json() == {"name": "mnist-serve", "version": "1.0.0", "extensions": ["binary_tensor_data"]}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_model_metadata_and_readiness_unversioned_and_versioned(client):
    expected = {
        "name": "mnist",
        "versions": [MNIST_VERSION],
        "platform": "pytorch",
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [-1, 784]},
            {"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28]},
        ],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "digit_probability", "datatype": "FP32", "shape": [-1]},
            {"name": "is_digit", "datatype": "BOOL", "shape": [-1]},
        ],
        # 8 MiB (MAX_BATCH_BYTES) holds 2,674 FP32 rows of 784 as binary data, and more UINT8 images.
        "parameters": {"max_batch_bytes": 8 * 1024 * 1024, "max_batch_size": 2674},
    }
    assert client.get("/v2/models/mnist").json() == expected
    assert client.get(f"/v2/models/mnist/versions/{MNIST_VERSION}").json() == expected
    assert client.get("/v2/models/mnist-reference").json()["name"] == "mnist-reference"
    assert client.get("/v2/models/mnist/ready").json() == {"name": "mnist", "ready": True}
    assert client.get(f"/v2/models/mnist/versions/{MNIST_VERSION}/ready").json() == {"name": "mnist", "ready": True}


@pytest.mark.parametrize(
    "path",
    ["/v2/models/nope", "/v2/models/nope/ready", "/v2/models/mnist/versions/1", "/v2/models/mnist/versions/x/ready"],
)
def test_unknown_models_and_versions_are_404_errors(client, path):
    assert "no model named" in _error(client.get(path), 404) or "has no version" in _error(client.get(path), 404)


def test_unknown_paths_and_methods_answer_in_the_protocols_shape(client):
    assert _error(client.get("/v2/nothing/here"), 404) == "Not Found"
    assert _error(client.delete(INFER), 405) == "Method Not Allowed"
    assert "no model named 'nope'" in _error(client.post("/v2/models/nope/infer", json={}), 404)
    assert "has no version '7'" in _error(client.post("/v2/models/mnist/versions/7/infer", json={}), 404)


def test_image_and_input_give_the_probabilities_predict_gives(client, mnist_test_split):
    pixels = mnist_test_split.images[:16].numpy()
    from_predict_answers = [client.post("/predict", files={"file": ("d.png", png_of(p))}).json() for p in pixels]
    from_predict = [answer["scores"] for answer in from_predict_answers]
    image = client.post(INFER, json=_image_request(pixels, id="batch-16"))
    assert image.status_code == 200
    body = image.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("mnist", MNIST_VERSION, "batch-16")
    probabilities, label, digit_probability, is_digit = body["outputs"]
    assert (probabilities["name"], probabilities["datatype"], probabilities["shape"]) == (
        "probabilities",
        "FP32",
        [16, 10],
    )
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "INT64", [16])
    scores = np.array(probabilities["data"]).reshape(16, 10)
    # One forward pass of 16 rounds a little differently from 16 passes of one.
    np.testing.assert_allclose(scores, np.array(from_predict), rtol=0, atol=1e-5)
    assert label["data"] == scores.argmax(axis=1).tolist()
    from_predict_verdicts = [answer["verdict"] != "not_a_digit" for answer in from_predict_answers]
    assert (is_digit["datatype"], is_digit["shape"], is_digit["data"]) == ("BOOL", [16], from_predict_verdicts)
    assert (digit_probability["datatype"], digit_probability["shape"]) == ("FP32", [16])
    np.testing.assert_allclose(
        digit_probability["data"], [answer["digit_probability"] for answer in from_predict_answers], rtol=0, atol=1e-5
    )
    scaled = (pixels.reshape(16, 784) / np.float32(255)).astype(np.float32)
    as_input = client.post(INFER, json=_json_input("input", "FP32", [16, 784], scaled.tolist()))
    np.testing.assert_array_equal(np.array(as_input.json()["outputs"][0]["data"]).reshape(16, 10), scores)


def test_binary_tensors_both_ways_whatever_the_content_type(client, mnist_test_split):
    pixels = mnist_test_split.images[:8].numpy()
    inputs = (pixels.reshape(8, 784) / np.float32(255)).astype("<f4")
    header = {
        "id": "binary",
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [8, 784], "parameters": {"binary_data_size": inputs.nbytes}}
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
    }
    body, headers = _binary_body(header, inputs.tobytes())
    expected = client.post(INFER, json=_image_request(pixels)).json()["outputs"]
    for content_type in (None, "application/octet-stream", "application/json"):
        sent = headers if content_type is None else {**headers, "Content-Type": content_type}
        response = client.post(INFER, content=body, headers=sent)
        assert response.status_code == 200, response.text
        document, tail = _split_binary_response(response)
        probabilities, label = document["outputs"]
        assert probabilities == {
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [8, 10],
            "parameters": {"binary_data_size": 320},
        }
        np.testing.assert_array_equal(np.frombuffer(tail, "<f4"), np.array(expected[0]["data"], dtype=np.float32))
        assert label["data"] == expected[1]["data"]
        assert document["id"] == "binary"


def test_binary_data_output_asks_for_every_output_as_bytes_unless_one_says_otherwise(client, mnist_test_split):
    pixels = mnist_test_split.images[:2].numpy()
    everything = client.post(INFER, json=_image_request(pixels, parameters={"binary_data_output": True}))
    document, tail = _split_binary_response(everything)
    assert [output["parameters"]["binary_data_size"] for output in document["outputs"]] == [80, 16, 8, 2]
    assert np.frombuffer(tail[80:96], "<i8").tolist() == [7, 2]
    assert np.frombuffer(tail[104:], "|b1").tolist() == [True, True]
    mixed = client.post(
        INFER,
        json=_image_request(
            pixels,
            parameters={"binary_data_output": True},
            outputs=[{"name": "label", "parameters": {"binary_data": False}}],
        ),
    )
    assert mixed.headers["content-type"] == "application/json"
    assert mixed.json()["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [2], "data": [7, 2]}]


def test_nested_data_is_read_like_flat_data(client, mnist_test_split):
    pixels = mnist_test_split.images[:3].numpy()
    flat = client.post(INFER, json=_image_request(pixels)).json()
    nested = client.post(INFER, json=_json_input("image", "UINT8", [3, 28, 28], pixels.tolist())).json()
    assert nested == flat


def test_only_the_requested_outputs_come_back_and_the_id_is_optional(client, mnist_test_split):
    body = client.post(
        INFER, json=_image_request(mnist_test_split.images[:1].numpy(), outputs=[{"name": "label"}])
    ).json()
    assert body == {
        "model_name": "mnist",
        "model_version": MNIST_VERSION,
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [7]}],
    }


def test_versioned_inference_and_another_model(client, mnist_test_split):
    request = _image_request(mnist_test_split.images[:1].numpy())
    assert (
        client.post(f"/v2/models/mnist/versions/{MNIST_VERSION}/infer", json=request).json()["model_version"]
        == MNIST_VERSION
    )
    assert client.post("/v2/models/mnist-reference/infer", json=request).json()["model_name"] == "mnist-reference"


def test_the_cnn_answers_over_v2_as_predict_does(client, mnist_test_split):
    pixels = mnist_test_split.images[:16].numpy()
    outputs = client.post("/v2/models/mnist-cnn/infer", json=_image_request(pixels)).json()["outputs"]
    by_name = {output["name"]: np.asarray(output["data"]).reshape(output["shape"]) for output in outputs}
    answers = [
        client.post("/predict", params={"model": "mnist-cnn"}, files={"file": ("d.png", png_of(image))}).json()
        for image in pixels
    ]
    assert by_name["label"].tolist() == [answer["class"] for answer in answers]
    expected = np.asarray([answer["scores"] for answer in answers])
    np.testing.assert_allclose(by_name["probabilities"], expected, rtol=0, atol=1e-5)


_ZEROS = [0] * 784


def _ending_with(value) -> list:
    """A 784-value tensor whose last value is `value`."""
    return [*_ZEROS[:-1], value]


def _encoded(*, inputs: list[dict] | None = None, **fields) -> bytes:
    """A request's JSON bytes: one valid UINT8 image input unless `inputs` says otherwise."""
    image = _json_input("image", "UINT8", [1, 28, 28], _ZEROS)["inputs"]
    return json.dumps({"inputs": image if inputs is None else inputs, **fields}).encode()


def _one_input(name: str, datatype: str, shape: list, data) -> list[dict]:
    return _json_input(name, datatype, shape, data)["inputs"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "the request is not valid JSON"),
        (b"[1, 2]", "the request must be a JSON object"),
        (b"{}", "'inputs' must be a list holding one input"),
        (_encoded(inputs=[]), "'inputs' must be a list holding one input"),
        (b'{"inputs": {"name": "image"}}', "'inputs' must be a list holding one input"),
        (_encoded(id=5), "'id' must be a string"),
        (_encoded(parameters=[]), "'parameters' must be a JSON object"),
        (_encoded(inputs=_one_input("image", "UINT8", [1, 28, 28], _ZEROS) * 2), "send exactly one input"),
        (_encoded(inputs=_one_input("pixels", "UINT8", [1, 28, 28], _ZEROS)), "unknown input 'pixels'"),
        (_encoded(inputs=_one_input("image", "FP32", [1, 28, 28], _ZEROS)), "input 'image' must be UINT8, not FP32"),
        (_encoded(inputs=_one_input("image", "UINT9", [1, 28, 28], _ZEROS)), "unknown datatype 'UINT9'"),
        (_encoded(inputs=_one_input("image", "UINT8", [1, 784], _ZEROS)), "must have shape ['N', 28, 28]"),
        (_encoded(inputs=_one_input("image", "UINT8", [1, 28, -28], _ZEROS)), "must have shape"),
        (_encoded(inputs=_one_input("image", "UINT8", [1.0, 28, 28], _ZEROS)), "must have shape"),
        (
            _encoded(inputs=_one_input("image", "UINT8", [0, 28, 28], [])),
            "holds a batch of 0; a request of at most 8.0 MiB (MAX_BATCH_BYTES) carries 1 to 10699 rows of UINT8",
        ),
        (
            _encoded(inputs=_one_input("input", "FP32", [2675, 784], [])),
            "holds a batch of 2675; a request of at most 8.0 MiB (MAX_BATCH_BYTES) carries 1 to 2674 rows of FP32",
        ),
        (_encoded(inputs=_one_input("image", "UINT8", [65, 28, 28], [])), "'data' must be flat with"),
        (_encoded(inputs=_one_input("image", "UINT8", [1, 28, 28], _ZEROS[:-1])), "'data' must be flat with 784"),
        (_encoded(inputs=_one_input("image", "UINT8", [1, 28, 28], [[[0] * 28] * 27 + [[0] * 27]])), "nested as"),
        (_encoded(inputs=_one_input("image", "UINT8", [1, 28, 28], _ending_with(256))), "from 0 to 255"),
        (_encoded(inputs=_one_input("image", "UINT8", [1, 28, 28], _ending_with(1.5))), "from 0 to 255"),
        (_encoded(inputs=_one_input("image", "UINT8", [1, 28, 28], _ending_with(True))), "from 0 to 255"),
        (_encoded(inputs=_one_input("input", "FP32", [1, 784], _ending_with("0.5"))), "JSON numbers only"),
        (_encoded(inputs=_one_input("input", "FP32", [1, 784], _ending_with(None))), "JSON numbers only"),
        (_encoded(inputs=_one_input("input", "FP32", [1, 784], _ending_with(255))), "outside [0, 1]"),
        (_encoded(inputs=_one_input("input", "FP32", [1, 784], _ZEROS)).replace(b"0]", b"NaN]"), "NaN is not a number"),
        (_encoded(inputs=_one_input("input", "FP32", [1, 784], _ZEROS)).replace(b"0]", b"-Infinity]"), "Infinity is"),
        (_encoded(inputs=_one_input("input", "FP32", [1, 784], _ZEROS)).replace(b"0]", b"1e999]"), "NaN or infinite"),
        (_encoded(inputs=_one_input("input", "FP32", [1, 784], _ZEROS)).replace(b"0]", b"1e39]"), "outside [0, 1]"),
        (_encoded(outputs=[{"name": "logits"}]), "unknown output 'logits'"),
        (_encoded(outputs=[{"name": "label"}] * 2), "asked for twice"),
        (_encoded(outputs=[{"name": "label", "parameters": {"classification": 3}}]), "classification extension"),
        (_encoded(parameters={"binary_data_output": "yes"}), "must be true or false"),
        (_encoded(inputs=[{"name": "image", "datatype": "UINT8", "shape": [1, 28, 28]}]), "needs 'data' (a list)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_client_mistakes_are_400_errors_saying_what_is_wrong(client, body, fragment):
    assert fragment in _error(client.post(INFER, content=body), 400)


def test_a_huge_declared_shape_is_refused_before_anything_is_allocated(client):
    request = _json_input("input", "FP32", [100_000_000, 784], [])
    header = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [100_000_000, 784], "parameters": {"binary_data_size": 4}}
        ]
    }
    body, headers = _binary_body(header, b"\0" * 4)
    tracemalloc.start()
    try:
        assert "holds a batch of 100000000" in _error(client.post(INFER, json=request), 400)
        assert "holds a batch of 100000000" in _error(client.post(INFER, content=body, headers=headers), 400)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024  # the declared tensor would be 313 GB


def _both_data_and_binary() -> dict:
    [image] = _one_input("image", "UINT8", [1, 28, 28], _ZEROS)
    return {"inputs": [{**image, "parameters": {"binary_data_size": 784}}]}


def _binary_image(size_declared, payload: bytes, **header_extra) -> tuple[bytes, dict[str, str]]:
    header = {
        "inputs": [
            {
                "name": "image",
                "datatype": "UINT8",
                "shape": [1, 28, 28],
                "parameters": {"binary_data_size": size_declared},
            }
        ],
        **header_extra,
    }
    return _binary_body(header, payload)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: _binary_image(783, b"\0" * 783), "binary_data_size is 783, but UINT8 [1, 28, 28] takes 784 bytes"),
        (lambda: _binary_image("784", b"\0" * 784), "binary_data_size is 784, but"),
        (lambda: _binary_image(784, b"\0" * 700), "declares 784 bytes of binary data, but 700 follow"),
        (lambda: _binary_image(784, b"\0" * 800), "declares 784 bytes of binary data, but 800 follow"),
        (
            lambda: (_binary_image(784, b"\0" * 784)[0], {"Inference-Header-Content-Length": "99999"}),
            "at most the body's",
        ),
        (lambda: (_binary_image(784, b"\0" * 784)[0], {"Inference-Header-Content-Length": "-5"}), "got '-5'"),
        (lambda: (_binary_image(784, b"\0" * 784)[0], {"Inference-Header-Content-Length": "0"}), "raw binary requests"),
        (lambda: (_binary_image(784, b"\0" * 784)[0], {"Inference-Header-Content-Length": "10"}), "not valid JSON"),
        (lambda: _binary_body(_json_input("image", "UINT8", [1, 28, 28], _ZEROS), b"\0" * 4), "no input declares"),
        (lambda: _binary_body(_both_data_and_binary(), b"\0" * 784), "has both 'data' and binary_data_size"),
    ],
    ids=[
        "size-vs-shape",
        "size-not-int",
        "short",
        "long",
        "header-past-end",
        "header-negative",
        "raw",
        "header-cut",
        "orphan-bytes",
        "both",
    ],
)
def test_binary_sizes_that_do_not_add_up_are_400_errors(client, build, fragment):
    body, headers = build()
    assert fragment in _error(client.post(INFER, content=body, headers=headers), 400)


def test_not_ready_is_a_503_error(mnist_test_split):
    unstarted = make_client()  # no `with`: the lifespan has not run
    response = unstarted.post(INFER, json=_image_request(mnist_test_split.images[:1].numpy()))
    assert "not loaded yet" in _error(response, 503)
    assert response.headers["retry-after"] == "1"
    assert "not loaded yet" in _error(unstarted.get("/v2/health/ready"), 503)
    assert unstarted.get("/v2/health/live").status_code == 200


def test_a_body_over_the_batch_limit_is_a_413_error():
    with make_client(max_batch_bytes=10_000) as small:
        request = _json_input("input", "FP32", [4, 784], [0.5] * (4 * 784))
        assert "the limit is 9.8 KiB" in _error(small.post(INFER, json=request), 413)


def test_v2_requests_are_counted_and_logged_under_their_route_template(client, mnist_test_split):
    client.post(INFER, json=_image_request(mnist_test_split.images[:2].numpy()))
    metrics = client.get("/metrics").text
    assert 'mnist_http_requests_total{method="POST",route="/v2/models/{model_name}/infer",status="200"}' in metrics
    assert f'mnist_predictions_total{{class="7",model="mnist",version="{MNIST_VERSION}"}}' in metrics


@pytest.mark.parametrize("header_length", ["\N{SUPERSCRIPT THREE}", "\N{ARABIC-INDIC DIGIT ONE}", "1e3", " 12"])
def test_a_header_length_that_is_not_plain_digits_is_a_400_error(header_length):
    """A latin-1 header can carry "³", which str.isdigit takes and int() refuses."""
    body, _ = _binary_image(784, b"\0" * 784)
    with pytest.raises(V2Error, match="Inference-Header-Content-Length must be the size of the JSON header"):
        parse_infer_request(body, header_length, max_request_bytes=8 * 1024 * 1024)


def test_a_request_carries_as_many_rows_as_its_bytes_allow(client, mnist_test_split):
    """2,000 FP32 rows (6.3 MB as binary data) in one request at the default limits, answered as the
    same digits are in requests of a few rows, while small requests go on being answered."""
    inputs = (mnist_test_split.images[:2000].numpy().reshape(2000, 784) / np.float32(255)).astype("<f4")
    header = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [2000, 784],
                "parameters": {"binary_data_size": inputs.nbytes},
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }
    body, headers = _binary_body(header, inputs.tobytes())
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    probabilities = np.frombuffer(_split_binary_response(response)[1], "<f4").reshape(2000, 10)
    for start in range(0, 2000, 250):
        rows = inputs[start : start + 8]
        small = client.post(INFER, json=_json_input("input", "FP32", [8, 784], rows.reshape(-1).tolist())).json()
        expected = np.array(small["outputs"][0]["data"], dtype=np.float32).reshape(8, 10)
        np.testing.assert_allclose(probabilities[start : start + 8], expected, atol=1e-5)
        assert (probabilities[start : start + 8].argmax(1) == expected.argmax(1)).all()
