"""Write samples/0.png ... samples/9.png: the first MNIST test image of each class, as 28x28 PNGs."""

import argparse
import io
from pathlib import Path

from PIL import Image

from training.artifacts import atomic_write_bytes
from training.data import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("dataset"), help="folder holding MNIST/raw/")
    parser.add_argument("--out", type=Path, default=Path("samples"), help="where to write the PNGs")
    args = parser.parse_args()
    _, test_split = load_mnist(args.data_dir, download=False)
    for digit in range(10):
        index = int((test_split.labels == digit).nonzero()[0])
        buffer = io.BytesIO()
        Image.fromarray(test_split.images[index].numpy()).save(buffer, format="PNG")
        atomic_write_bytes(args.out / f"{digit}.png", buffer.getvalue())
        print(f"{args.out / f'{digit}.png'}: test image #{index}, label {digit}")


if __name__ == "__main__":
    main()
