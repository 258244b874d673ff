"""Loading one version's weights safely and running the network on prepared digits."""

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.observability import metrics
from mnist_core.architectures import (
    ArchitectureError,
    DeclaredNetwork,
    WeightsMismatchError,
    apply_temperature,
    declared_network,
    network_with_weights,
)
from mnist_core.contract import IMAGE_SIDE, NUM_CLASSES, input_steps, network_inputs, pixels_to_input
from mnist_core.detector import DETECTOR_ARCHITECTURES, DETECTOR_FILENAME, DIGIT_OUTPUT
from mnist_core.device import DeviceUnavailableError, resolve_device
from mnist_core.files import file_sha256, metadata_path_for
from mnist_core.serving import ScoreFunction

logger = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """The weights cannot be served; the message names the file and the problem."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    path: Path
    sha256: str
    network: DeclaredNetwork
    temperature: float  # the served softmax is softmax(logits / temperature); 1 where none was fitted
    device: str
    torch_version: str
    metadata: dict[str, Any] | None

    @property
    def test_accuracy(self) -> float | None:
        return (self.metadata or {}).get("test", {}).get("accuracy")


@dataclass(frozen=True)
class Detector:
    """A version's digit detector (mnist_core.detector) in its serving form, and where it draws the line."""

    network: DeclaredNetwork
    scores: ScoreFunction  # float32 inputs (N, 784) -> softmax (N, 2)
    threshold: float  # below this digit probability, the input is not a digit
    sha256: str


# What the service says of each input, beside its class: a digit it reads; a digit it is unsure of
# (served confidence under UNSURE_BELOW); not a digit at all (the version's detector). Dashboards
# count the last two.
DIGIT = "digit"
UNSURE = "unsure"
NOT_A_DIGIT = "not_a_digit"
COUNTED_VERDICTS = (UNSURE, NOT_A_DIGIT)
# Where a version carries no detector, every input counts as a digit: its probability is NaN
# (JSON null) and no threshold turns it away.
NO_DETECTOR_PROBABILITY = np.float32("nan")


class DigitClassifier:
    """One loaded version of a model on its device; safe to call from several threads at once."""

    def __init__(self, network: nn.Module, device: torch.device, info: ModelInfo, detector: Detector | None) -> None:
        self.network = network
        self.detector = detector
        self.device = device
        self.info = info
        # The steps this model's recorded input contract adds (deskew for the robust recipe).
        self.contract = (info.metadata or {}).get("input_contract")
        self.prediction_counters = metrics.prediction_counters(info)
        self.confidence_histogram = metrics.confidence_histogram(info)
        self.verdict_counters = metrics.verdict_counters(info, COUNTED_VERDICTS)
        # Percent of the repository gate's canary digits it names right; set once, before it is served.
        self.canary_accuracy: float | None = None
        self._scores = info.network.architecture.serving_form(network, device)

    def network_view(self, inputs: np.ndarray) -> np.ndarray:
        """float32 inputs (N, 784) -> what the network receives from them, as uint8 images (N, 28, 28)."""
        prepared = network_inputs(inputs, self.contract)
        return np.clip(np.rint(prepared * 255), 0, 255).astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)

    def probabilities_of_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """float32 inputs (N, 784) in [0, 1], before the model's contract steps -> softmax probabilities (N, 10)."""
        return self._scores(network_inputs(inputs, self.contract))

    def turned_away(self, digit_probabilities: np.ndarray) -> np.ndarray:
        """Which inputs the detector says are not digits, from their digit probabilities (N,) as
        assess_inputs gives them. Without a detector none is (NaN compares false)."""
        return digit_probabilities < (self.detector.threshold if self.detector is not None else 0.0)

    def assess_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """float32 inputs (N, 784) -> (N, 11): the softmax probabilities of the ten digits, then the
        detector's probability that the input is a digit at all (NaN where the version has none);
        split_assessment takes the two apart."""
        assessed = np.empty((len(inputs), NUM_CLASSES + 1), dtype=np.float32)
        assessed[:, :NUM_CLASSES] = self.probabilities_of_inputs(inputs)
        if self.detector is None:
            assessed[:, NUM_CLASSES] = NO_DETECTOR_PROBABILITY
        else:
            assessed[:, NUM_CLASSES] = self.detector.scores(inputs)[:, DIGIT_OUTPUT]
        return assessed


def split_assessment(assessed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """assess_inputs' rows (N, 11) -> the class probabilities (N, 10) and the digit probabilities (N,)."""
    return assessed[:, :NUM_CLASSES], assessed[:, NUM_CLASSES]


def load_classifier(
    path: Path,
    device_name: str,
    *,
    name: str,
    version: int,
    allow_sha256_mismatch: bool = False,
    require_metadata: bool = True,
) -> DigitClassifier:
    """Load, check and warm up the weights at `path`, or raise ModelLoadError saying why not.

    The metadata beside the weights records their sha256, which is what tells a complete copy
    from a half-copied one; only a single file named by MODEL_PATH may come without it.
    """
    try:
        device = resolve_device(device_name)
    except DeviceUnavailableError as error:
        raise ModelLoadError(f"cannot serve {path} on DEVICE={device_name}: {error}") from None
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file not found")
    sha256 = file_sha256(path)
    metadata = _read_metadata(path)
    if metadata is None and require_metadata:
        raise ModelLoadError(f"{path}: no {metadata_path_for(path).name} beside it to verify its sha256")
    _check_sha256(path, sha256, metadata, allow_sha256_mismatch)
    state_dict = _read_state_dict(path)
    try:
        declared = declared_network((metadata or {}).get("architecture"), state_dict)
        network = network_with_weights(declared, state_dict)
    except (ArchitectureError, WeightsMismatchError) as error:
        where = metadata_path_for(path) if isinstance(error, ArchitectureError) else path
        raise ModelLoadError(f"{where}: {error}") from None
    temperature = _temperature(path, metadata)
    apply_temperature(network, declared.architecture, temperature)
    network.to(device).eval().requires_grad_(False)
    info = ModelInfo(name, version, path, sha256, declared, temperature, str(device), torch.__version__, metadata)
    try:
        input_steps((metadata or {}).get("input_contract"))
    except ValueError as error:
        raise ModelLoadError(f"{path}: {error}") from None
    detector = _load_detector(path, metadata, device, allow_sha256_mismatch)
    classifier = DigitClassifier(network, device, info, detector)
    # The first call pays for lazy kernel and allocator set-up; do it before taking traffic.
    classifier.assess_inputs(pixels_to_input(np.zeros((1, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)))
    return classifier


def _load_detector(
    weights_path: Path, metadata: dict[str, Any] | None, device: torch.device, allow_sha256_mismatch: bool
) -> Detector | None:
    """The detector model.json declares under "detector", checked as the classifier is; None if it declares none."""
    declaration = (metadata or {}).get("detector")
    if declaration is None:
        return None
    where = metadata_path_for(weights_path)
    if not isinstance(declaration, dict):
        raise ModelLoadError(f'{where}: its "detector" must be a JSON object')
    threshold = declaration.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ModelLoadError(f"{where}: detector.threshold must be a number from 0 to 1, found {threshold!r}")
    path = weights_path.with_name(DETECTOR_FILENAME)
    if not path.is_file():
        raise ModelLoadError(f"{path}: the detector model.json declares is not there")
    sha256 = file_sha256(path)
    _check_sha256(path, sha256, declaration, allow_sha256_mismatch, where)
    state_dict = _read_state_dict(path)
    try:
        declared = declared_network(declaration.get("architecture"), state_dict, DETECTOR_ARCHITECTURES)
        network = network_with_weights(declared, state_dict)
    except (ArchitectureError, WeightsMismatchError) as error:
        raise ModelLoadError(f"{where if isinstance(error, ArchitectureError) else path}: {error}") from None
    network.to(device).eval().requires_grad_(False)
    return Detector(declared, declared.architecture.serving_form(network, device), float(threshold), sha256)


def _read_metadata(path: Path) -> dict[str, Any] | None:
    metadata_path = metadata_path_for(path)
    if not metadata_path.is_file():
        return None
    try:
        metadata = json.loads(metadata_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{metadata_path}: unreadable metadata ({error})") from None
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{metadata_path}: metadata must be a JSON object")
    return metadata


def _temperature(path: Path, metadata: dict[str, Any] | None) -> float:
    """The temperature the version's model.json records under "calibration", or 1."""
    calibration = (metadata or {}).get("calibration")
    if calibration is None:
        return 1.0
    temperature = calibration.get("temperature") if isinstance(calibration, dict) else None
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 < temperature < math.inf:
        raise ModelLoadError(
            f"{metadata_path_for(path)}: calibration.temperature must be a positive number, found {temperature!r}"
        )
    return float(temperature)


def _check_sha256(
    path: Path, sha256: str, metadata: dict[str, Any] | None, allow_mismatch: bool, recorded_in: Path | None = None
) -> None:
    """`metadata` records the file's sha256 under "weights" (model.json, or its "detector" section)."""
    if metadata is None:
        logger.warning("no metadata beside %s: its sha256 %s is not verified", path, sha256)
        return
    weights = metadata.get("weights")
    expected = weights.get("sha256") if isinstance(weights, dict) else None
    if expected == sha256:
        return
    message = f"{path}: sha256 {sha256} does not match {expected} recorded in {recorded_in or metadata_path_for(path)}"
    if not allow_mismatch:
        raise ModelLoadError(message + " (set ALLOW_SHA256_MISMATCH=1 to serve it anyway)")
    logger.warning("%s; serving it because ALLOW_SHA256_MISMATCH is set", message)


def _read_state_dict(path: Path) -> Any:
    try:
        # weights_only refuses any pickle that would construct objects other than tensors
        # and plain containers, so a weights file cannot run code.
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # arbitrary bytes make the unpickler raise IndexError, KeyError and more
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{path}: not a loadable weights-only state_dict ({first_line[:300]})") from None
    return state_dict
