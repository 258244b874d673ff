"""What the model repository holds on disk: `<root>/<model name>/<version>/model.pt` + `model.json`.

This is Triton's layout: one folder per model, one integer-named folder per version. Scanning only
lists what is there and how each version's files look now (their fingerprint); whether a version
can be served is decided by loading it.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from mnist_core.detector import DETECTOR_FILENAME
from mnist_core.files import MODEL_NAME_PATTERN, VERSION_PATTERN, WEIGHTS_FILENAME, metadata_path_for

logger = logging.getLogger(__name__)

# (inode, size, modification time) of the weights, the metadata and the digit detector: a copy,
# an in-place rewrite or a folder renamed over the old one all change it.
FileStat = tuple[int, int, int] | None
Fingerprint = tuple[FileStat, FileStat, FileStat]


class RepositoryError(Exception):
    """The repository itself is unusable (missing, not a folder); the message says which."""


@dataclass(frozen=True)
class VersionFolder:
    model: str
    version: int
    weights: Path
    fingerprint: Fingerprint
    # Only a single file named by MODEL_PATH may lack its metadata (and thus its sha256 check).
    metadata_required: bool = True


def scan_repository(root: Path) -> list[VersionFolder]:
    """Every version folder under `root`, ordered by model name then version.

    Hidden entries (a writer's temporary folder) are skipped silently; other names that are not
    a model name or a version number are skipped with a debug line, since operators put READMEs
    and the like beside their models.
    """
    if not root.is_dir():
        raise RepositoryError(f"{root}: model repository not found (set MODEL_REPOSITORY to its folder)")
    found = []
    for model_folder in _visible_folders(root):
        if not MODEL_NAME_PATTERN.fullmatch(model_folder.name):
            logger.debug("skipping %s: not a model name", model_folder)
            continue
        for version_folder in _visible_folders(model_folder):
            if not VERSION_PATTERN.fullmatch(version_folder.name):
                logger.debug("skipping %s: not a version number", version_folder)
                continue
            weights = version_folder / WEIGHTS_FILENAME
            found.append(VersionFolder(model_folder.name, int(version_folder.name), weights, fingerprint(weights)))
    return sorted(found, key=lambda folder: (folder.model, folder.version))


def single_file(weights: Path, model: str) -> VersionFolder:
    """MODEL_PATH: one weights file served as version 1 of `model`."""
    return VersionFolder(model, 1, weights, fingerprint(weights), metadata_required=False)


def fingerprint(weights: Path) -> Fingerprint:
    return _stat(weights), _stat(metadata_path_for(weights)), _stat(weights.with_name(DETECTOR_FILENAME))


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


def _visible_folders(folder: Path) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError as error:
        logger.warning("cannot list %s: %s", folder, error.strerror)
        return []
    return [Path(entry.path) for entry in entries if not entry.name.startswith(".") and entry.is_dir()]
