"""MNIST through torchvision, checked up front and held in memory as tensors.

The classic recipe wraps the dataset in a DataLoader with a per-sample `ToTensor`, which spends
most of its time in Python per image. Here each split is read once into a uint8 tensor and
converted with the shared input contract, so training can batch by slicing.
"""

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets

from mnist_core.contract import IMAGE_SIDE, pixels_to_input

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetError(Exception):
    """The MNIST files are missing, unreadable or malformed; the message says which and why."""


@dataclass(frozen=True)
class MnistSplit:
    images: torch.Tensor  # uint8, (N, 28, 28), white digit on black
    labels: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self) -> torch.Tensor:
        """The network inputs (N, 784), float32, by the input contract."""
        return torch.from_numpy(pixels_to_input(self.images.numpy()))

    def hold_out(self, count: int, seed: int) -> tuple["MnistSplit", "MnistSplit"]:
        """The split without `count` digits picked by `seed`, and those digits (both in their order here)."""
        picked = torch.zeros(len(self), dtype=torch.bool)
        picked[torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:count]] = True
        kept = MnistSplit(self.images[~picked], self.labels[~picked])
        return kept, MnistSplit(self.images[picked], self.labels[picked])


def raw_folder(data_dir: Path) -> Path:
    """Where torchvision keeps (and downloads) the four IDX files."""
    return data_dir / "MNIST" / "raw"


def expected_files() -> list[str]:
    return [name for pair in SPLIT_FILES.values() for name in pair]


def missing_files(data_dir: Path) -> list[str]:
    folder = raw_folder(data_dir)
    return [name for name in expected_files() if not (folder / name).is_file()]


def load_mnist(data_dir: Path, download: bool) -> tuple[MnistSplit, MnistSplit]:
    """Return the (train, test) splits, downloading first only when allowed and needed."""
    if missing_files(data_dir):
        if not download:
            raise DatasetError(
                f"MNIST not found in {raw_folder(data_dir)}: expected {', '.join(missing_files(data_dir))}; "
                "drop --no-download to fetch them there, or give --data-dir a folder that holds MNIST/raw/"
            )
        _download(data_dir)
    return _load_split(data_dir, "train"), _load_split(data_dir, "test")


def _download(data_dir: Path) -> None:
    made = [folder for folder in (raw_folder(data_dir), raw_folder(data_dir).parent, data_dir) if not folder.exists()]
    try:
        datasets.MNIST(root=str(data_dir), train=True, download=True)
    except (OSError, RuntimeError) as error:
        _remove_if_empty(made)  # a failed download leaves no empty dataset/MNIST/raw behind
        reason = " ".join(str(error).split())  # torchvision's message spans several lines
        raise DatasetError(
            f"could not download MNIST into {raw_folder(data_dir)} ({reason}); with a copy elsewhere, "
            "give --data-dir the folder that holds its MNIST/raw/ and add --no-download"
        ) from error
    if missing_files(data_dir):
        raise DatasetError(
            f"download finished but {raw_folder(data_dir)} still lacks {', '.join(missing_files(data_dir))}"
        )


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove these folders, deepest first, each only while it is empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _load_split(data_dir: Path, split: str) -> MnistSplit:
    image_file, label_file = SPLIT_FILES[split]
    folder = raw_folder(data_dir)
    image_count = _check_idx(folder / image_file, _IDX_IMAGES_MAGIC, (IMAGE_SIDE, IMAGE_SIDE))
    label_count = _check_idx(folder / label_file, _IDX_LABELS_MAGIC, ())
    if image_count != label_count:
        raise DatasetError(
            f"{folder}: {image_file} holds {image_count} images but {label_file} holds {label_count} labels"
        )
    dataset = datasets.MNIST(root=str(data_dir), train=split == "train", download=False)
    labels = dataset.targets.to(torch.int64)
    if labels.numel() and int(labels.max()) > 9:
        raise DatasetError(f"{folder / label_file}: labels must be 0-9, found {int(labels.max())}")
    return MnistSplit(images=dataset.data, labels=labels)


def _check_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> int:
    """Validate an IDX header and the file's length against it; return the item count.

    torchvision trusts the header and fails deep inside with an assertion or a reshape error on
    a damaged file, so the checks here name the file and what is wrong with it.
    """
    dims = 1 + len(item_shape)
    header_size = 4 + 4 * dims
    try:
        with path.open("rb") as stream:
            header = stream.read(header_size)
            size = path.stat().st_size
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror}") from error
    if len(header) < header_size:
        raise DatasetError(f"{path} is truncated: {size} bytes, shorter than its {header_size}-byte header")
    found_magic, count, *shape = struct.unpack(f">{1 + dims}I", header)
    if found_magic != magic:
        raise DatasetError(
            f"{path} is not an MNIST IDX file of this kind: magic number 0x{found_magic:08x}, expected 0x{magic:08x}"
        )
    if tuple(shape) != item_shape:
        raise DatasetError(f"{path}: items are {tuple(shape)}, expected {item_shape}")
    expected_size = header_size + count * math.prod(item_shape)
    if size != expected_size:
        state = "truncated" if size < expected_size else "longer than its header says"
        raise DatasetError(
            f"{path} is {state}: {size} bytes, its header declares {count} items ({expected_size} bytes)"
        )
    return count
