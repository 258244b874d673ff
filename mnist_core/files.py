"""File helpers shared by the writer (training) and the reader (service) of model files."""

import hashlib
import re
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


# The model repository's layout, as Triton has it: <repository>/<model name>/<version>/model.pt.
# Names and versions are checked with these patterns by the service and the training CLI alike;
# a folder whose name does not match (a hidden temporary folder, say) is not a version.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,8}")


def version_numbers(model_folder: Path) -> list[int]:
    """The version folders of one model, as numbers in ascending order; none if the folder is absent."""
    if not model_folder.is_dir():
        return []
    return sorted(
        int(entry.name) for entry in model_folder.iterdir() if entry.is_dir() and VERSION_PATTERN.fullmatch(entry.name)
    )
