"""Publishing a trained model as one version folder of the model repository, all at once.

Everything is written into a hidden temporary folder beside the destination (a name starting with
'.', which the service's scanner skips as not a version number), flushed to disk, then renamed
into place in one step: a reader sees either no version folder or a complete one, never half of
one. Replacing an existing version (`--force`) swaps the two folders in one step as well.
"""

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mnist_core.files import WEIGHTS_FILENAME, metadata_path_for, version_numbers

# renameat2(2) flags (Linux 3.15+): fail if the destination exists / swap the two paths.
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# Other trainers publishing the same model at the same moment: how many numbers to try.
_NEXT_VERSION_ATTEMPTS = 10


class VersionFolderError(Exception):
    """The destination cannot be written as asked; the message says why and what to do."""


def next_version_folder(repository: Path, model: str) -> Path:
    """`<repository>/<model>/<highest version + 1>`, or version 1 for a new model."""
    versions = version_numbers(repository / model)
    return repository / model / str(versions[-1] + 1 if versions else 1)


def check_destination(destination: Path, force: bool) -> None:
    """Refuse before any training starts, rather than after, when the destination is taken."""
    if not destination.exists():
        return
    if not force:
        raise VersionFolderError(f"{destination} already exists; pass --force to replace it")
    if not is_version_folder(destination):
        raise VersionFolderError(
            f"{destination} is not a model version folder (no {WEIGHTS_FILENAME}); refusing to replace it"
        )


def is_version_folder(path: Path) -> bool:
    weights = path / WEIGHTS_FILENAME
    return path.is_dir() and (weights.is_file() or metadata_path_for(weights).is_file())


@contextlib.contextmanager
def staging_folder(parent: Path) -> Iterator[Path]:
    """A hidden, empty folder in `parent` to write a version into; removed if anything fails
    before it is published (once published, it no longer exists under this name)."""
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(staging: Path, destination: Path, force: bool) -> None:
    """Flush the staged folder to disk and rename it to `destination` in one step.

    Without `force` an existing destination is never touched, even one that appeared while the
    model trained. With `force` an existing version folder is swapped for the new one in one
    step (where the system cannot swap, it is moved aside first and the gap is that of two renames).
    """
    # mkdtemp makes it private; a version folder is read by the service, maybe as another user.
    os.chmod(staging, 0o755)  # noqa: S103
    _fsync(staging)
    if not destination.exists():
        _rename_no_replace(staging, destination)
    elif force and is_version_folder(destination):
        _replace(staging, destination)
    else:
        raise VersionFolderError(f"{destination} already exists; pass --force to replace it")
    _fsync(destination.parent)


def publish_as_next_version(staging: Path, repository: Path, model: str) -> Path:
    """Publish as the model's next free version; if another writer takes that number first, the next."""
    for _ in range(_NEXT_VERSION_ATTEMPTS):
        destination = next_version_folder(repository, model)
        try:
            publish(staging, destination, force=False)
        except VersionFolderError:
            continue
        return destination
    raise VersionFolderError(
        f"no free version number found in {repository / model}; is something else named {destination.name} there?"
    )


def _rename_no_replace(source: Path, destination: Path) -> None:
    if _renameat2(source, destination, _RENAME_NOREPLACE):
        return
    if destination.exists():  # the portable fallback: check, then rename
        raise VersionFolderError(f"{destination} already exists; pass --force to replace it")
    os.rename(source, destination)


def _replace(staging: Path, destination: Path) -> None:
    """Swap `staging` and `destination`, then delete what is now at `staging` (the old version)."""
    if _renameat2(staging, destination, _RENAME_EXCHANGE):
        shutil.rmtree(staging)
        return
    aside = Path(tempfile.mkdtemp(prefix=".replaced-", dir=destination.parent))
    os.rename(destination, aside / destination.name)
    os.rename(staging, destination)
    shutil.rmtree(aside)


def _renameat2(source: Path, destination: Path, flags: int) -> bool:
    """Linux's renameat2; False where the C library or the file system does not offer it."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(destination), flags) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    if error == errno.EEXIST:
        raise VersionFolderError(f"{destination} already exists; pass --force to replace it")
    raise OSError(error, os.strerror(error), str(source), None, str(destination))


def _fsync(folder: Path) -> None:
    """Flush a folder's entries (and, for the staging folder, its files were flushed as written)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
