"""decode -> preprocess -> model: from uploaded files to class probabilities.

Small images are handled on the event loop, where a thread hop would cost more than the work;
anything larger goes to the thread pool so one big upload never stalls other requests.
"""

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from app.errors import ClientError
from app.inference.classifier import DigitClassifier
from app.inference.decode import load_pixels, open_image
from app.inference.preprocess import to_digit_pixels
from app.observability import metrics
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


def _naming_the_file(upload: Upload, error: ClientError) -> ClientError:
    """In a batch, the same error prefixed with the file it is about."""
    return error if upload.index is None else type(error)(f"{upload.describe()}: {error.detail}")


class PredictionPipeline:
    def __init__(self, classifier: DigitClassifier, max_image_pixels: int) -> None:
        self.classifier = classifier
        self.max_image_pixels = max_image_pixels

    async def predict(self, uploads: list[Upload]) -> np.ndarray:
        """Softmax probabilities (len(uploads), 10), rows in upload order, from one forward pass."""
        images = self._open_all(uploads)
        if sum(image.width * image.height for image in images) <= INLINE_PIXEL_BUDGET:
            return self._classify(uploads, images)
        return await run_in_threadpool(self._classify, uploads, images)

    def _open_all(self, uploads: list[Upload]) -> list[Image.Image]:
        images = []
        for upload in uploads:
            try:
                images.append(open_image(upload.data, self.max_image_pixels))
            except ClientError as error:
                raise _naming_the_file(upload, error) from None
        return images

    def _classify(self, uploads: list[Upload], images: list[Image.Image]) -> np.ndarray:
        digits = np.empty((len(images), IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
        for position, (upload, image) in enumerate(zip(uploads, images, strict=True)):
            try:
                digits[position] = to_digit_pixels(load_pixels(image))
            except ClientError as error:
                raise _naming_the_file(upload, error) from None
        started = time.perf_counter()
        probabilities = self.classifier.probabilities(digits)
        metrics.INFERENCE_SECONDS.observe(time.perf_counter() - started)
        return probabilities
