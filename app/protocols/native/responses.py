"""From class probabilities to the JSON bodies the prediction endpoints return."""

from typing import Any

import numpy as np

from app.observability import metrics


def prediction_bodies(probabilities: np.ndarray) -> list[dict[str, Any]]:
    """`{"class", "confidence", "scores"}` per row of (N, 10) probabilities; counts each class."""
    bodies = []
    for row in probabilities.tolist():
        predicted = max(range(len(row)), key=row.__getitem__)
        metrics.PREDICTIONS_BY_CLASS[predicted].inc()
        bodies.append({"class": predicted, "confidence": row[predicted], "scores": row})
    return bodies
