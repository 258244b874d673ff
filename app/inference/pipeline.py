"""The inference core both protocols call: image files or ready tensors in, class probabilities out.

decode -> preprocess -> model for files; the model's own input contract alone for tensors that
clients already prepared. Small images are decoded and preprocessed on the event loop, where a
thread hop would cost more than the work; anything larger goes to the thread pool so one big
upload never stalls other requests. Every model call goes through a MicroBatcher.
"""

import asyncio
from dataclasses import dataclass
from weakref import WeakKeyDictionary, WeakMethod

import numpy as np

from app.errors import ClientError
from app.inference.batching import MicroBatcher
from app.inference.classifier import DIGIT, NOT_A_DIGIT, UNSURE, DigitClassifier, split_assessment
from app.inference.decode import OpenedImage, gray_pixels, open_upload, pixel_count
from app.inference.preprocess import to_digit_pixels
from app.observability import metrics, tracing
from app.repository.registry import ModelRepository, Refusal, ServedModel
from mnist_core.contract import IMAGE_SIDE, pixels_to_input

# Up to a full batch of MNIST-sized digits: sending that little work to a thread costs more in
# hops and GIL hand-overs than it spares the event loop. Larger requests (V2 tensors may carry
# thousands of rows) run in a thread, so the loop goes on serving small requests meanwhile.
INLINE_ROWS = 64
INLINE_PIXEL_BUDGET = INLINE_ROWS * IMAGE_SIDE * IMAGE_SIDE
_FILENAME_SHOWN = 80
# Requests with this many rows or more gain nothing from sharing a model call: joined with others,
# large V2 batches ran slower, since the joined batch no longer fits the CPU's caches.
OWN_CALL_ROWS = 16


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None
    index: int | None = None  # position in a batch; None for a single upload

    def describe(self) -> str:
        """How a batch error names the file: its position and a printable, bounded filename."""
        if not self.filename:
            return f"file #{self.index} (no filename)"
        shown = self.filename[:_FILENAME_SHOWN] + ("..." if len(self.filename) > _FILENAME_SHOWN else "")
        return f"file #{self.index} ({shown!r})"


@dataclass(frozen=True)
class Classification:
    """What one model version said about a batch: probabilities (N, 10), the argmax classes (N,), the
    detector's probability that each input is a digit at all (N,) and the verdict on each (N,)."""

    classifier: DigitClassifier
    probabilities: np.ndarray
    classes: np.ndarray
    digit_probabilities: np.ndarray  # NaN where the version has no detector
    verdicts: list[str]  # DIGIT, UNSURE or NOT_A_DIGIT per row
    inputs: np.ndarray  # float32 (N, 784), before the model's contract steps

    def network_views(self) -> np.ndarray:
        """What the network was given, as uint8 images (N, 28, 28): after the model's contract steps."""
        return self.classifier.network_view(self.inputs)


def _naming_the_file(upload: Upload, error: ClientError) -> ClientError:
    """In a batch, the same error prefixed with the file it is about."""
    return error if upload.index is None else type(error)(f"{upload.describe()}: {error.detail}")


@dataclass(frozen=True)
class ModelStatus:
    """A model of the repository as the doors list it: its served versions, and those refused."""

    name: str
    served: ServedModel | None
    refused: list[Refusal]


class InferenceCore:
    """What every protocol door asks, answered once (KServe's data plane is the model): readiness,
    the served models and versions, and inference on them."""

    def __init__(self, repository: ModelRepository, max_image_pixels: int, unsure_below: float) -> None:
        self._repository = repository
        self.max_image_pixels = max_image_pixels
        # A digit whose served confidence is below this is answered "unsure" (UNSURE_BELOW).
        self.unsure_below = unsure_below
        # One batcher per served version; a replaced version's goes with it.
        self._batchers: WeakKeyDictionary[DigitClassifier, MicroBatcher] = WeakKeyDictionary()

    @property
    def default_model(self) -> str:
        return self._repository.default_model

    def ready(self) -> bool:
        """Whether the service can answer requests that name no model: the default model is served."""
        return self._repository.default_model in self._repository.served

    def resolve(self, model: str | None, version: str | None) -> DigitClassifier:
        """The version a request will run on from start to finish, even if a newer one arrives meanwhile."""
        return self._repository.resolve(model, version)

    def served_versions(self, model: str) -> list[int]:
        """The version numbers a served model answers with now, ascending."""
        return list(self._repository.served[model].versions)

    def models(self) -> list[ModelStatus]:
        """Every model found in the repository, by name: served, refused, or both."""
        served, refusals = self._repository.served, self._repository.refusals
        return [
            ModelStatus(name, served.get(name), refusals.get(name, [])) for name in sorted(set(served) | set(refusals))
        ]

    async def classify_files(self, classifier: DigitClassifier, uploads: list[Upload]) -> Classification:
        """Decode and normalise each image, then the model; rows in upload order."""
        images = self._open_all(uploads)
        if sum(pixel_count(image) for image in images) <= INLINE_PIXEL_BUDGET:
            digits = self._digits(uploads, images)
        else:
            digits = await asyncio.to_thread(self._digits, uploads, images)
        return await self.classify_digits(classifier, digits)

    async def classify_digits(self, classifier: DigitClassifier, digits: np.ndarray) -> Classification:
        """uint8 digits (N, 28, 28), already framed like MNIST."""
        return await self.classify_inputs(classifier, pixels_to_input(digits))

    async def classify_inputs(self, classifier: DigitClassifier, inputs: np.ndarray) -> Classification:
        """float32 network inputs (N, 784) in [0, 1]: a few rows in one model call with other requests'
        (batching.py), a batch of its own in a call of its own, in a thread when it is large."""
        batcher = self._batcher(classifier)
        if len(inputs) > INLINE_ROWS:
            assessed = await asyncio.to_thread(batcher.run_now, inputs)
        elif len(inputs) >= OWN_CALL_ROWS:
            assessed = batcher.run_now(inputs)
        else:
            assessed = await batcher.assess(inputs)
        probabilities, digit_probabilities = split_assessment(assessed)
        classes = probabilities.argmax(axis=1)
        confidences = probabilities.max(axis=1)
        verdicts = self._verdicts(classifier, confidences, digit_probabilities)
        _count(classifier, classes, confidences, verdicts)
        return Classification(classifier, probabilities, classes, digit_probabilities, verdicts, inputs)

    def _verdicts(
        self, classifier: DigitClassifier, confidences: np.ndarray, digit_probabilities: np.ndarray
    ) -> list[str]:
        """not_a_digit where the version's detector turns the input away, else unsure below UNSURE_BELOW, else digit."""
        rejected = classifier.turned_away(digit_probabilities)
        unsure = confidences < self.unsure_below
        return [
            NOT_A_DIGIT if no else UNSURE if doubt else DIGIT
            for no, doubt in zip(rejected.tolist(), unsure.tolist(), strict=True)
        ]

    def _batcher(self, classifier: DigitClassifier) -> MicroBatcher:
        batcher = self._batchers.get(classifier)
        if batcher is None:
            # Weakly: a batcher holding its classifier would keep its own entry, and so every version
            # that ever served a request, alive. A request holds its classifier while it waits.
            run = WeakMethod(classifier.assess_inputs)
            batcher = self._batchers[classifier] = MicroBatcher(lambda inputs: run()(inputs))
        return batcher

    def _open_all(self, uploads: list[Upload]) -> list[OpenedImage]:
        images = []
        with tracing.span("decode", files=len(uploads)):
            for upload in uploads:
                try:
                    images.append(open_upload(upload.data, self.max_image_pixels))
                except ClientError as error:
                    raise _naming_the_file(upload, error) from None
        return images

    @staticmethod
    def _digits(uploads: list[Upload], images: list[OpenedImage]) -> np.ndarray:
        digits = np.empty((len(images), IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
        with tracing.span("preprocess", files=len(uploads)):
            for position, (upload, image) in enumerate(zip(uploads, images, strict=True)):
                try:
                    digits[position] = to_digit_pixels(gray_pixels(image))
                except ClientError as error:
                    raise _naming_the_file(upload, error) from None
        return digits


def _count(classifier: DigitClassifier, classes: np.ndarray, confidences: np.ndarray, verdicts: list[str]) -> None:
    """Each prediction in the version's metrics: its class, its confidence and its verdict."""
    for predicted, count in enumerate(np.bincount(classes, minlength=len(classifier.prediction_counters)).tolist()):
        if count:
            classifier.prediction_counters[predicted].inc(count)
    metrics.observe_each(classifier.confidence_histogram, confidences)
    for verdict, counter in classifier.verdict_counters.items():
        count = verdicts.count(verdict)
        if count:
            counter.inc(count)
