"""The native API's response bodies as documented in the OpenAPI schema, with examples for /docs."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mnist_core.contract import NUM_CLASSES

_EXAMPLE_SCORES = [2.1e-06, 1.3e-05, 0.00041, 0.0011, 3.2e-07, 1.9e-05, 1.1e-09, 0.99827, 8.4e-06, 0.00017]


class Prediction(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "example": {
                "class": 7,
                "confidence": 0.99827,
                "scores": _EXAMPLE_SCORES,
                "verdict": "digit",
                "digit_probability": 0.9993,
                "model": "mnist",
                "version": 2,
            }
        },
    )

    predicted_class: int = Field(alias="class", ge=0, le=NUM_CLASSES - 1, description="the predicted digit")
    confidence: float = Field(ge=0, le=1, description="the predicted class's probability, scores[class]")
    scores: list[float] = Field(
        min_length=NUM_CLASSES,
        max_length=NUM_CLASSES,
        description="softmax probabilities of the digits 0-9 in order; they sum to 1",
    )
    verdict: Literal["digit", "unsure", "not_a_digit"] = Field(
        description="not_a_digit when the version's detector says the image is no digit at all (class and "
        "scores are still given); else unsure when confidence is under UNSURE_BELOW; else digit"
    )
    digit_probability: float | None = Field(
        ge=0,
        le=1,
        description="the detector's probability that the image is a digit at all; null for a version without one",
    )
    model: str = Field(description="the model that answered")
    version: int = Field(description="the version of that model that answered")
    input_image: str | None = Field(
        None,
        description="with ?show_input=true only: the 28x28 image the network was given, as a PNG data URL",
        examples=["data:image/png;base64,iVBORw0KGgo..."],
    )


class BatchPrediction(BaseModel):
    predictions: list[Prediction] = Field(
        description="one prediction per uploaded file, in upload order, all from the same model version"
    )


class ErrorBody(BaseModel):
    detail: str = Field(description="what was wrong with the request, in words")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]


class DetectorDescription(BaseModel):
    architecture: str = Field(examples=["784 -> 512 -> ReLU -> 2 (not a digit, a digit)"])
    weights_sha256: str
    threshold: float = Field(ge=0, le=1, description="below this digit probability the answer is not_a_digit")


class VersionDescription(BaseModel):
    version: int
    architecture: str = Field(examples=["784 -> 50 -> ReLU -> 10"], description="the network's layers")
    architecture_class: str = Field(
        examples=["NeuralNetwork"], description="the architecture the version's model.json declares"
    )
    architecture_parameters: dict[str, Any] = Field(examples=[{"hidden_size": 50}])
    device: str = Field(examples=["cpu"])
    weights_path: str
    weights_sha256: str
    test_accuracy: float | None = Field(description="percent on the 10,000 MNIST test images, from model.json")
    temperature: float = Field(
        description="the served softmax divides the logits by this (model.json's calibration); 1 if none was fitted"
    )
    canary_accuracy: float = Field(
        description="percent of the gate's 1,000 canary digits it named right when it loaded (GATE_MIN_ACCURACY)"
    )
    torch_version: str
    input_contract: dict[str, Any]
    detector: DetectorDescription | None = Field(
        description="the version's digit detector (detector.pt), which answers not_a_digit; null if it has none"
    )


class ModelDescription(VersionDescription):
    name: str = Field(examples=["mnist"])


class Refused(BaseModel):
    version: int
    reason: str = Field(description="why this version, found on disk, is not served")


class RepositoryModel(BaseModel):
    name: str
    default_version: int | None = Field(
        description="the version used when a request names none; null if none is served"
    )
    versions: list[VersionDescription] = Field(description="the versions served now")
    refused: list[Refused] = Field(description="versions on disk that failed their checks")


class RepositoryIndex(BaseModel):
    default_model: str = Field(description="the model used when a request names none (DEFAULT_MODEL)")
    models: list[RepositoryModel]


def error_response(description: str, example: str) -> dict[str, Any]:
    """An entry for a route's `responses=`: the error schema with one example body."""
    return {
        "model": ErrorBody,
        "description": description,
        "content": {"application/json": {"example": {"detail": example}}},
    }
