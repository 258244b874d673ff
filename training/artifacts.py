"""Writing the training outputs, each atomically, so a reader never sees half a file.

They are written into a staging folder that training/versions.py then publishes as one version
folder of the model repository.
"""

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_core.contract import describe_contract
from mnist_core.files import file_sha256, metadata_path_for
from training.calibrate import Calibration
from training.evaluate import Evaluation
from training.train import TrainConfig, TrainResult, augmentation_seed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as stream:
        try:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        except BaseException:
            os.unlink(stream.name)
            raise
    os.chmod(stream.name, 0o644)
    os.replace(stream.name, path)


def save_weights(model: nn.Module, path: Path) -> str:
    """Save the state_dict alone (no pickled classes) and return the file's sha256."""
    buffer = io.BytesIO()
    state_dict = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    torch.save(state_dict, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return file_sha256(path)


def build_metadata(
    recipe: str,
    config: TrainConfig,
    result: TrainResult,
    evaluation: Evaluation,
    calibration: Calibration | None,
    device: torch.device,
    weights_path: Path,
    weights_sha256: str,
) -> dict[str, Any]:
    return {
        "format_version": 1,
        "architecture": config.network.declaration(result.model),
        "input_contract": describe_contract(config.input_steps),
        "recipe": recipe,
        "hyperparameters": {
            "optimizer": "Adam",
            "learning_rate": config.learning_rate,
            "lr_schedule": config.lr_schedule,
            "batch_size": config.batch_size,
            "epochs": config.epochs,
            "loss": "cross-entropy",
            "shuffle": "reshuffled every epoch",
        },
        "augmentation": None
        if config.augmentation is None
        else {**config.augmentation.describe(), "seed": augmentation_seed(config)},
        "seed": config.seed,
        "device": str(device),
        "torch_version": torch.__version__,
        "epochs": [
            {
                "epoch": epoch.epoch,
                "loss": round(epoch.loss, 6),
                "test_accuracy": epoch.test_accuracy,
                "seconds": round(epoch.seconds, 3),
            }
            for epoch in result.epochs
        ],
        "train_seconds": round(result.train_seconds, 3),
        "test": {
            "correct": evaluation.correct,
            "total": evaluation.total,
            "accuracy": round(evaluation.accuracy, 2),
            "per_class_accuracy": [round(value, 2) for value in evaluation.per_class_accuracy],
            "confusion_matrix": evaluation.confusion.tolist(),
        },
        # The served softmax divides the logits by its temperature; without it the temperature is 1.
        "calibration": None if calibration is None else calibration.describe(),
        "weights": {"file": weights_path.name, "sha256": weights_sha256},
    }


def write_metadata(weights_path: Path, metadata: dict[str, Any]) -> Path:
    path = metadata_path_for(weights_path)
    atomic_write_bytes(path, (json.dumps(metadata, indent=2) + "\n").encode())
    return path
