"""Training speed: the classic DataLoader loop against this project's in-memory loop, in one run.

Both train the same network with the same recipe (Adam, lr 0.001, batch 64, 10 epochs,
cross-entropy, reshuffled every epoch) on the same machine and thread count. The classic loop
is the reference tutorial's: a DataLoader over torchvision's MNIST with a per-sample ToTensor.
"""

import argparse
import json
import time
from datetime import date
from pathlib import Path

import torch
from machine import describe_machine
from torch import nn, optim
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from mnist_core.network import NeuralNetwork
from training.data import load_mnist
from training.evaluate import evaluate
from training.train import TrainConfig, train


def classic_loop(data_dir: Path, config: TrainConfig) -> tuple[NeuralNetwork, float]:
    torch.manual_seed(config.seed)
    dataset = datasets.MNIST(root=str(data_dir), train=True, transform=transforms.ToTensor(), download=False)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True)
    model = NeuralNetwork(hidden_size=config.hidden_size)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=config.learning_rate)
    started = time.perf_counter()
    for _ in range(config.epochs):
        for data, targets in loader:
            loss = criterion(model(data.reshape(data.shape[0], -1)), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("dataset"), help="folder holding MNIST/raw/")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/train_results.json"))
    args = parser.parse_args()
    config = TrainConfig(epochs=args.epochs)
    train_split, test_split = load_mnist(args.data_dir, download=False)
    test_inputs = test_split.inputs()

    # The in-memory loop runs before and after the classic one, so drift on a shared machine
    # weighs on both sides; its time is the mean of the two runs.
    fast_runs = []
    for position in ("before", "after"):
        if position == "after":
            classic_model, classic_seconds = classic_loop(args.data_dir, config)
            classic_accuracy = evaluate(classic_model, test_inputs, test_split.labels).accuracy
            print(f"classic loop:            {classic_seconds:6.1f} s, test accuracy {classic_accuracy:.2f} %")
        fast_runs.append(train(train_split, test_split, config, torch.device("cpu")))
        print(f"in-memory loop ({position}): {fast_runs[-1].train_seconds:6.1f} s", flush=True)
    fast_seconds = sum(run.train_seconds for run in fast_runs) / len(fast_runs)
    fast_accuracy = evaluate(fast_runs[0].model, test_inputs, test_split.labels).accuracy
    print(f"in-memory loop (mean):   {fast_seconds:6.1f} s, test accuracy {fast_accuracy:.2f} %")
    ratio = classic_seconds / fast_seconds
    print(f"speed-up: {ratio:.1f}x ({config.epochs} epochs, {torch.get_num_threads()} torch threads)")

    results = {
        "date": date.today().isoformat(),
        "machine": describe_machine(),
        "torch": f"{torch.__version__}, {torch.get_num_threads()} threads",
        "epochs": config.epochs,
        "classic_seconds": round(classic_seconds, 2),
        "classic_accuracy": round(classic_accuracy, 2),
        "in_memory_seconds": round(fast_seconds, 2),
        "in_memory_accuracy": round(fast_accuracy, 2),
        "speedup": round(ratio, 2),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
