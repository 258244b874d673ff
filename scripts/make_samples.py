"""Write what the repository keeps of the MNIST test set: samples/0.png ... samples/9.png (the
first test image of each class, as 28x28 PNGs) and the canary set every model version is evaluated
on before it is served (app/repository/canary.npz: 100 test digits of each class, picked by a
fixed seed, with their labels).

MNIST is read from the first folder that holds it: each --data-dir in turn, then dataset/, where
`make train` downloads it. Without it anywhere, this stops with one line saying where it looked.
"""

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from app.repository.gate import CANARY_PATH
from training.artifacts import atomic_write_bytes
from training.data import DatasetError, load_mnist, missing_files, raw_folder

# python -m training's default --data-dir: dataset/ in this repository.
DOWNLOAD_DIR = Path(__file__).resolve().parent.parent / "dataset"


def _shown(path: Path) -> str:
    """`path` relative to the current folder when it lies inside it, else as it is."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data-dir",
        type=Path,
        action="append",
        default=[],
        help="folder holding MNIST/raw/; may be repeated (dataset/ is always tried last)",
    )
    parser.add_argument("--out", type=Path, default=Path("samples"), help="where to write the PNGs")
    parser.add_argument("--canary-out", type=Path, default=CANARY_PATH, help="where to write the canary set")
    args = parser.parse_args()
    candidates = [*args.data_dir, DOWNLOAD_DIR]
    data_dir = next((folder for folder in candidates if not missing_files(folder)), None)
    if data_dir is None:
        looked = " or ".join(_shown(raw_folder(folder)) for folder in candidates)
        print(
            f"error: MNIST not found in {looked}; `make train` downloads it into dataset/ before it trains, "
            "or name a folder that holds MNIST/raw/: make samples DATA_DIR=/path/to/folder",
            file=sys.stderr,
        )
        return 1
    try:
        _, test_split = load_mnist(data_dir, download=False)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for digit in range(10):
        index = int((test_split.labels == digit).nonzero()[0])
        buffer = io.BytesIO()
        Image.fromarray(test_split.images[index].numpy()).save(buffer, format="PNG")
        atomic_write_bytes(args.out / f"{digit}.png", buffer.getvalue())
        print(f"{args.out / f'{digit}.png'}: test image #{index} of {_shown(raw_folder(data_dir))}, label {digit}")
    images, labels = test_split.images.numpy(), test_split.labels.numpy()
    picked = canary_indices(labels)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images[picked], labels=labels[picked].astype(np.uint8))
    atomic_write_bytes(args.canary_out, buffer.getvalue())
    source = _shown(raw_folder(data_dir))
    print(f"{_shown(args.canary_out)}: {len(picked)} test images of {source}, {CANARY_PER_CLASS} a class")
    return 0


CANARY_PER_CLASS = 100
CANARY_SEED = 23


def canary_indices(labels: np.ndarray) -> np.ndarray:
    """CANARY_PER_CLASS test images of each class, chosen by a fixed seed, in test-set order."""
    rng = np.random.default_rng(CANARY_SEED)
    chosen = [rng.choice(np.flatnonzero(labels == digit), CANARY_PER_CLASS, replace=False) for digit in range(10)]
    return np.sort(np.concatenate(chosen))


if __name__ == "__main__":
    sys.exit(main())
