"""From a classification to the JSON bodies the native prediction endpoints return."""

from typing import Any

from app.inference.pipeline import Classification


def prediction_bodies(result: Classification) -> list[dict[str, Any]]:
    """`{"class", "confidence", "scores", "model", "version"}` per classified image, in order."""
    info = result.classifier.info
    return [
        {"class": predicted, "confidence": row[predicted], "scores": row, "model": info.name, "version": info.version}
        for predicted, row in zip(result.classes.tolist(), result.probabilities.tolist(), strict=True)
    ]
