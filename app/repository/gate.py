"""The gate in front of every model version: a canary evaluation, offline, when the version loads.

Weights that load and match their declared architecture may still be broken: all zeros, shuffled,
trained against permuted labels, or far weaker than the version they would replace. Each loaded
version classifies the canary set (canary.npz beside this module: 100 MNIST test digits of each
class with their labels, written by scripts/make_samples.py) and is served only if it gets at
least GATE_MIN_ACCURACY percent right (named right and not turned away by its digit detector, so
a broken detector is refused as a broken classifier is) and, when it is newer than the version
its model serves, no more than GATE_MAX_ACCURACY_DROP points fewer than that version.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.inference.classifier import DigitClassifier, split_assessment
from mnist_core.contract import pixels_to_input

CANARY_PATH = Path(__file__).with_name("canary.npz")


class GateRefusedError(Exception):
    """The version loaded but is not to be served; the message says which check it failed."""


@dataclass(frozen=True)
class CanarySet:
    images: np.ndarray  # uint8 (N, 28, 28), MNIST-framed as the test set is
    labels: np.ndarray  # (N,)

    @classmethod
    def load(cls, path: Path = CANARY_PATH) -> "CanarySet":
        with np.load(path) as stored:
            return cls(stored["images"], stored["labels"].astype(np.int64))

    def accuracy(self, classifier: DigitClassifier) -> float:
        """Percent of the canary digits the version names right, through its input contract, and its
        digit detector (if it has one) does not turn away: a detector that refuses digits fails here."""
        probabilities, digit_probabilities = split_assessment(classifier.assess_inputs(pixels_to_input(self.images)))
        named_right = probabilities.argmax(axis=1) == self.labels
        kept = ~classifier.turned_away(digit_probabilities)
        return 100.0 * float(np.mean(named_right & kept))


@dataclass(frozen=True)
class Gate:
    canary: CanarySet
    min_accuracy: float  # percent
    max_accuracy_drop: float  # points

    def admit(self, candidate: DigitClassifier, served: DigitClassifier | None) -> float:
        """The candidate's canary accuracy, or GateRefusedError saying why it is not to be served.

        `served` is the version its model serves now, if any; only a newer candidate is held to it
        (pinned older versions are there because someone asked for them).
        """
        accuracy = self.canary.accuracy(candidate)
        if accuracy < self.min_accuracy:
            raise GateRefusedError(
                f"canary accuracy {accuracy:.1f} % is below GATE_MIN_ACCURACY={self.min_accuracy:g} % "
                f"({len(self.canary.labels)} MNIST test digits)"
            )
        if served is not None and served.canary_accuracy is not None and candidate.info.version > served.info.version:
            drop = served.canary_accuracy - accuracy
            if drop > self.max_accuracy_drop:
                raise GateRefusedError(
                    f"canary accuracy {accuracy:.1f} % is {drop:.1f} points below the {served.canary_accuracy:.1f} % "
                    f"of version {served.info.version}, which it would replace "
                    f"(GATE_MAX_ACCURACY_DROP={self.max_accuracy_drop:g})"
                )
        return accuracy
