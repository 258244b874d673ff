"""From a classification to the JSON bodies the native prediction endpoints return."""

import base64
import math
from typing import Any

import cv2
import numpy as np

from app.inference.pipeline import Classification

PNG_DATA_URL_PREFIX = "data:image/png;base64,"


def prediction_bodies(result: Classification, with_input_images: bool = False) -> list[dict[str, Any]]:
    """`{"class", "confidence", "scores", "verdict", "digit_probability", "model", "version"}` per
    classified image, in order; with `input_image` too when asked for."""
    info = result.classifier.info
    rows = zip(
        result.classes.tolist(),
        result.probabilities.tolist(),
        result.verdicts,
        result.digit_probabilities.tolist(),
        strict=True,
    )
    bodies = [
        {
            "class": predicted,
            "confidence": scores[predicted],
            "scores": scores,
            "verdict": verdict,
            "digit_probability": None if math.isnan(digit_probability) else digit_probability,
            "model": info.name,
            "version": info.version,
        }
        for predicted, scores, verdict, digit_probability in rows
    ]
    if with_input_images:
        for body, view in zip(bodies, result.network_views(), strict=True):
            body["input_image"] = png_data_url(view)
    return bodies


def png_data_url(pixels: np.ndarray) -> str:
    """A uint8 grayscale image as a PNG data URL, which a page can show as it is."""
    encoded, png = cv2.imencode(".png", pixels)
    if not encoded:
        raise ValueError("OpenCV could not encode a PNG")  # only for an impossible image; never a client's fault
    return PNG_DATA_URL_PREFIX + base64.b64encode(png.tobytes()).decode("ascii")
