"""The inference core both protocols call: image files or ready tensors in, class probabilities out.

decode -> preprocess -> model for files; the model's own input contract alone for tensors that
clients already prepared. Small images are handled on the event loop, where a thread hop would
cost more than the work; anything larger goes to the thread pool so one big upload never stalls
other requests.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.errors import ClientError
from app.inference.classifier import DigitClassifier
from app.inference.decode import OpenedImage, gray_pixels, open_upload, pixel_count
from app.inference.preprocess import to_digit_pixels
from app.observability import metrics
from app.repository.registry import ModelRepository
from mnist_core.contract import IMAGE_SIDE

# A full batch of MNIST-sized digits (about 2 ms of work, measured): sending it to a thread
# costs more in hops and GIL hand-overs than it spares the event loop.
INLINE_PIXEL_BUDGET = 64 * 28 * 28
_FILENAME_SHOWN = 80


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
    """What one model version said about a batch: probabilities (N, 10) and the argmax classes (N,)."""

    classifier: DigitClassifier
    probabilities: np.ndarray
    classes: np.ndarray


def _naming_the_file(upload: Upload, error: ClientError) -> ClientError:
    """In a batch, the same error prefixed with the file it is about."""
    return error if upload.index is None else type(error)(f"{upload.describe()}: {error.detail}")


class InferenceCore:
    def __init__(self, repository: ModelRepository, max_image_pixels: int) -> None:
        self.repository = repository
        self.max_image_pixels = max_image_pixels

    def resolve(self, model: str | None, version: str | None) -> DigitClassifier:
        """The version a request will run on from start to finish, even if a newer one arrives meanwhile."""
        return self.repository.resolve(model, version)

    async def classify_files(self, classifier: DigitClassifier, uploads: list[Upload]) -> Classification:
        """Decode and normalise each image, then one forward pass; rows in upload order."""
        images = self._open_all(uploads)
        if sum(pixel_count(image) for image in images) <= INLINE_PIXEL_BUDGET:
            return self._classify_images(classifier, uploads, images)
        return await run_in_threadpool(self._classify_images, classifier, uploads, images)

    def classify_digits(self, classifier: DigitClassifier, digits: np.ndarray) -> Classification:
        """uint8 digits (N, 28, 28), already framed like MNIST."""
        return self._classify(classifier, lambda: classifier.probabilities(digits))

    def classify_inputs(self, classifier: DigitClassifier, inputs: np.ndarray) -> Classification:
        """float32 network inputs (N, 784) in [0, 1]."""
        return self._classify(classifier, lambda: classifier.probabilities_of_inputs(inputs))

    def _open_all(self, uploads: list[Upload]) -> list[OpenedImage]:
        images = []
        for upload in uploads:
            try:
                images.append(open_upload(upload.data, self.max_image_pixels))
            except ClientError as error:
                raise _naming_the_file(upload, error) from None
        return images

    def _classify_images(
        self, classifier: DigitClassifier, uploads: list[Upload], images: list[OpenedImage]
    ) -> Classification:
        digits = np.empty((len(images), IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
        for position, (upload, image) in enumerate(zip(uploads, images, strict=True)):
            try:
                digits[position] = to_digit_pixels(gray_pixels(image))
            except ClientError as error:
                raise _naming_the_file(upload, error) from None
        return self.classify_digits(classifier, digits)

    @staticmethod
    def _classify(classifier: DigitClassifier, run_model: Callable[[], np.ndarray]) -> Classification:
        started = time.perf_counter()
        probabilities = run_model()
        metrics.INFERENCE_SECONDS.observe(time.perf_counter() - started)
        classes = probabilities.argmax(axis=1)
        for predicted in classes.tolist():
            classifier.prediction_counters[predicted].inc()
        return Classification(classifier, probabilities, classes)
