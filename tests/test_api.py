"""The service over HTTP (TestClient, lifespan running): predictions, parity, errors, batches."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from app.inference.pipeline import INLINE_PIXEL_BUDGET
from app.settings import Settings
from mnist_core.contract import network_inputs, pixels_to_input
from tests.conftest import make_client, reference_probabilities
from tests.helpers import REPO_ROOT, drawn_digit, encode, multipart_body, png_declaring, png_of


def _predict(client, data: bytes, filename: str = "digit.png"):
    return client.post("/predict", files={"file": (filename, data, "image/png")})


def _assert_prediction_shape(body: dict) -> None:
    assert set(body) == {"class", "confidence", "scores", "verdict", "digit_probability", "model", "version"}
    scores = body["scores"]
    assert len(scores) == 10
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert body["class"] == int(np.argmax(scores))
    assert body["confidence"] == scores[body["class"]]


def test_predict_classifies_a_real_test_digit(client, mnist_test_split):
    response = _predict(client, png_of(mnist_test_split.images[0].numpy()))
    assert response.status_code == 200
    body = response.json()
    _assert_prediction_shape(body)
    assert body["class"] == int(mnist_test_split.labels[0]) == 7


def test_http_predictions_equal_the_model_on_dataset_tensors(client, mnist_test_split, reference_model):
    images = mnist_test_split.images[:200]
    expected = reference_probabilities(reference_model, images)
    for image, expected_scores in zip(images, expected, strict=True):
        body = _predict(client, png_of(image.numpy())).json()
        assert body["class"] == int(expected_scores.argmax())
        np.testing.assert_allclose(body["scores"], expected_scores, rtol=0, atol=1e-5)


def test_dark_digits_on_white_280px_canvases_are_recognised(client, mnist_test_split):
    """Upscaled, inverted test digits: the path for drawings and scans, not the 28x28 fast path."""
    assert INLINE_PIXEL_BUDGET < 280 * 280  # so these are decoded in the thread pool
    images, labels = mnist_test_split.images[:100], mnist_test_split.labels[:100]
    correct = 0
    for image, label in zip(images, labels, strict=True):
        big = Image.fromarray(255 - image.numpy()).resize((280, 280), Image.Resampling.BILINEAR)
        correct += _predict(client, encode(big)).json()["class"] == int(label)
    assert correct >= 95


@pytest.mark.parametrize("digit", [0, 1, 7])
@pytest.mark.parametrize(
    ("mode", "image_format"), [("L", "PNG"), ("RGB", "JPEG"), ("RGB", "WEBP"), ("L", "BMP"), ("L", "TIFF")]
)
def test_hand_drawn_digits_in_several_formats(client, digit, mode, image_format):
    data = encode(drawn_digit(digit, mode=mode), image_format)
    assert _predict(client, data, f"drawing.{image_format.lower()}").json()["class"] == digit


def test_a_white_digit_on_a_transparent_canvas(client):
    strokes = drawn_digit(7, ink=255, paper=0)
    canvas = Image.new("RGBA", strokes.size, (0, 0, 0, 0))
    canvas.putalpha(strokes)  # opaque only where the strokes are
    canvas = Image.merge("RGBA", (*Image.new("RGB", strokes.size, (255, 255, 255)).split(), strokes))
    assert _predict(client, encode(canvas)).json()["class"] == 7


def test_a_dark_digit_on_a_transparent_canvas(client):
    strokes = drawn_digit(1, ink=255, paper=0)
    canvas = Image.merge("RGBA", (*Image.new("RGB", strokes.size, (20, 20, 20)).split(), strokes))
    assert _predict(client, encode(canvas)).json()["class"] == 1


@pytest.mark.parametrize(
    ("data", "status", "fragment"),
    [
        (b"", 400, "empty"),
        (b"hello, this is text and not an image", 400, "not a recognised image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 400, "cannot read this PNG"),
        (b"%PDF-1.7\n1 0 obj <<>> endobj\n", 415, "PDF is not an accepted image format"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', 415, "XML/SVG"),
        (png_declaring(50_000, 50_000), 400, "pixels"),
    ],
    ids=["empty", "text", "garbage-png", "pdf", "svg", "bomb"],
)
def test_bad_uploads_get_a_clear_client_error(client, data, status, fragment):
    response = _predict(client, data)
    assert response.status_code == status
    assert fragment in response.json()["detail"]


def test_a_truncated_png_is_a_400(client, mnist_test_split):
    data = encode(Image.fromarray(mnist_test_split.images[0].numpy()).resize((200, 200)))
    response = _predict(client, data[: len(data) // 2])
    assert response.status_code == 400
    assert "PNG" in response.json()["detail"]


def test_blank_images_are_refused_as_having_no_digit(client):
    for shade in (0, 255, 128):
        for size in (28, 280):
            response = _predict(client, encode(Image.new("L", (size, size), shade)))
            assert response.status_code == 400
            assert "no digit found" in response.json()["detail"]


def test_upload_over_the_limit_is_a_413_with_content_length():
    with make_client(max_upload_bytes=1000) as small_client:
        response = _predict(small_client, b"\x89PNG\r\n\x1a\n" + b"\0" * 50_000)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


def test_upload_over_the_limit_is_a_413_without_content_length():
    body, content_type = multipart_body([("file", "big.png", b"\0" * 200_000)])

    def chunks():
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    with make_client(max_upload_bytes=1000) as small_client:
        response = small_client.post("/predict", content=chunks(), headers={"content-type": content_type})
    assert response.status_code == 413


def test_file_just_over_the_limit_inside_the_body_allowance_is_a_413():
    data = encode(Image.new("L", (28, 28)))  # about 70 bytes
    with make_client(max_upload_bytes=len(data) - 1) as small_client:
        response = _predict(small_client, data)
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"file #0 ('digit.png') in field 'file' is larger than {len(data) - 1} bytes: "
        "send a smaller file, or raise MAX_UPLOAD_BYTES"
    )


def test_json_body_is_a_415(client):
    response = client.post("/predict", json={"image": "aGVsbG8="})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_missing_file_field_is_a_422_with_a_readable_detail(client, mnist_test_split):
    response = client.post("/predict", files={"image": ("digit.png", png_of(mnist_test_split.images[0].numpy()))})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "no file in field 'file' (the upload has: 'image'); send it as: curl -F file=@digit.png .../predict"
    )


@pytest.mark.parametrize(("endpoint", "field"), [("/predict", "file"), ("/predict/batch", "files")])
def test_a_path_sent_as_text_gets_the_curl_line_with_the_at_sign(client, endpoint, field):
    """`curl -F file=samples/7.png` sends the path as a text field, not the file."""
    response = client.post(endpoint, files={field: (None, b"samples/7.png")})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"field '{field}' holds the text 'samples/7.png', not a file: to send the file it names, "
        f"put @ before the path: curl -F {field}=@samples/7.png ..."
    )


def test_a_trailing_slash_is_answered_with_the_path_meant_not_an_empty_redirect(client):
    response = client.post("/predict/", files={"file": (None, b"samples/7.png")}, follow_redirects=False)
    assert response.status_code == 404
    assert response.json()["detail"] == "Not Found: /predict/ has a trailing slash; the path is /predict"
    assert client.get("/no/such/").json()["detail"] == "Not Found"


def test_the_api_description_shows_the_address_the_docs_were_loaded_from():
    with make_client() as at_another_address:
        at_another_address.base_url = "http://10.20.30.40:9123"
        description = at_another_address.get("/openapi.json").json()["info"]["description"]
    assert "curl -F file=@digit.png http://10.20.30.40:9123/predict" in description
    assert "127.0.0.1:8000" not in description


def test_two_files_in_predict_are_refused(client, mnist_test_split):
    data = png_of(mnist_test_split.images[0].numpy())
    response = client.post("/predict", files=[("file", ("a.png", data)), ("file", ("b.png", data))])
    assert response.status_code == 400
    assert response.json()["detail"] == "more than 1 file sent in field 'file': use /predict/batch (field 'files')"


def test_batch_answers_in_upload_order(client, mnist_test_split, reference_model):
    images = mnist_test_split.images[:40]
    files = [("files", (f"{index}.png", png_of(image.numpy()))) for index, image in enumerate(images)]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    expected = reference_probabilities(reference_model, images)
    assert [p["class"] for p in predictions] == expected.argmax(axis=1).tolist()
    for prediction, expected_scores in zip(predictions, expected, strict=True):
        _assert_prediction_shape(prediction)
        np.testing.assert_allclose(prediction["scores"], expected_scores, rtol=0, atol=1e-5)


def test_batch_refuses_more_than_max_batch(mnist_test_split):
    data = png_of(mnist_test_split.images[0].numpy())
    with make_client(max_batch=3) as small_client:
        response = small_client.post("/predict/batch", files=[("files", (f"{i}.png", data)) for i in range(4)])
        assert response.status_code == 400
        assert (
            response.json()["detail"]
            == "more than 3 files sent in field 'files': send at most that many per batch (MAX_BATCH)"
        )
        assert small_client.post("/predict/batch", files=[("files", ("a.png", data))] * 3).status_code == 200


def test_a_batch_of_one_allowed_file_is_still_a_batch(mnist_test_split):
    data = png_of(mnist_test_split.images[0].numpy())
    with make_client(max_batch=1) as one_file_client:
        accepted = one_file_client.post("/predict/batch", files=[("files", ("a.png", data))])
        assert [prediction["class"] for prediction in accepted.json()["predictions"]] == [7]
        refused = one_file_client.post("/predict/batch", files=[("files", ("a.png", data))] * 2)
        assert (
            refused.json()["detail"]
            == "more than 1 file sent in field 'files': send at most that many per batch (MAX_BATCH)"
        )
        named = one_file_client.post("/predict/batch", files=[("files", ("x.txt", b"text"))])
        assert named.json()["detail"].startswith("file #0 ('x.txt'): ")


def test_batch_error_names_the_file_by_index_and_filename(client, mnist_test_split):
    good = png_of(mnist_test_split.images[0].numpy())
    files = [("files", ("good.png", good)), ("files", ("notes.txt", b"plain text")), ("files", ("g2.png", good))]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("file #1 ('notes.txt'): not a recognised image")


def test_health_readiness_and_model_description(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    description = client.get("/model").json()
    assert description["architecture"] == "784 -> 50 -> ReLU -> 10"
    assert description["device"] == "cpu"
    assert description["test_accuracy"] >= 97.0
    assert len(description["weights_sha256"]) == 64


def test_not_ready_before_the_model_is_loaded(mnist_test_split):
    unstarted = make_client()  # no `with`: the lifespan has not run
    assert unstarted.get("/healthz").status_code == 200
    assert unstarted.get("/readyz").status_code == 503
    response = _predict(unstarted, png_of(mnist_test_split.images[0].numpy()))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


def test_docs_and_openapi_document_every_error_status(client):
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
    schema = client.get("/openapi.json").json()
    for path, field in (("/predict", "file"), ("/predict/batch", "files")):
        operation = schema["paths"][path]["post"]
        assert {"200", "400", "401", "408", "413", "415", "422", "503"} <= set(operation["responses"])
        form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert form["required"] == [field]
        file_field = form["properties"][field].get("items", form["properties"][field])
        # How OpenAPI 3.1 marks a file: Swagger UI shows a file picker for it in "Try it out".
        assert file_field["contentMediaType"] == "application/octet-stream"
    assert "security" not in schema["paths"]["/predict"]["post"]  # no API_KEY configured: open


def test_requests_that_name_no_model_get_the_shipped_default_the_cnn():
    """The suite's clients default to `mnist`; the service itself defaults to the CNN (README)."""
    with make_client(default_model=Settings().default_model) as client:
        answer = client.post("/predict", files={"file": ("7.png", (REPO_ROOT / "samples" / "7.png").read_bytes())})
        description = client.get("/model").json()
    assert (answer.json()["model"], answer.json()["class"]) == ("mnist-cnn", 7)
    assert description["architecture_class"] == "ConvNet"
    assert description["architecture_parameters"] == {"channels": [16, 32], "hidden_size": 64}


def _image_of(data_url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.removeprefix(prefix)))))


def test_show_input_returns_the_image_the_network_was_given(client, mnist_test_split):
    digits = mnist_test_split.images[:3].numpy()
    files = [("files", (f"{n}.png", png_of(digit))) for n, digit in enumerate(digits)]
    plain = client.post("/predict/batch", params={"model": "mnist-reference"}, files=files).json()["predictions"]
    assert all("input_image" not in prediction for prediction in plain)
    for model in ("mnist-reference", "mnist"):
        answers = client.post("/predict/batch", params={"model": model, "show_input": "true"}, files=files).json()
        seen = np.stack([_image_of(prediction["input_image"]) for prediction in answers["predictions"]])
        contract = json.loads((REPO_ROOT / "models" / model / "1" / "model.json").read_text())["input_contract"]
        # A 28x28 MNIST digit is used pixel for pixel; then the model's own steps (mnist deskews).
        expected = network_inputs(pixels_to_input(digits), contract).reshape(-1, 28, 28)
        assert np.array_equal(seen, np.clip(np.rint(expected * 255), 0, 255).astype(np.uint8))
    single = client.post("/predict?show_input=true", files={"file": ("0.png", png_of(digits[0]))}).json()
    assert single["input_image"] == answers["predictions"][0]["input_image"]  # the client's default is mnist
