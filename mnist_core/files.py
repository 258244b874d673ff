"""File helpers shared by the writer (training) and the reader (service) of model files."""

import hashlib
from pathlib import Path

_CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


WEIGHTS_FILENAME = "model.pt"


def metadata_path_for(weights_path: Path) -> Path:
    """The JSON file written beside a weights file: architecture, metrics and its sha256."""
    return weights_path.with_suffix(".json")
