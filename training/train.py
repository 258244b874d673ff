"""The training loop: the reference recipe, batched from tensors held in memory."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mnist_core.contract import pixels_to_input
from mnist_core.network import DEFAULT_HIDDEN_SIZE, NeuralNetwork
from training.data import MnistSplit
from training.evaluate import evaluate


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the reference's: Adam, lr 0.001, batch 64, 10 epochs, cross-entropy."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.001
    hidden_size: int = DEFAULT_HIDDEN_SIZE
    seed: int = 0


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    loss: float  # mean cross-entropy over the epoch's batches
    test_accuracy: float  # percent
    seconds: float


@dataclass
class TrainResult:
    model: NeuralNetwork
    epochs: list[EpochResult] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        return sum(epoch.seconds for epoch in self.epochs)


# Called after every `PROGRESS_EVERY` steps with (epoch, step, steps_per_epoch, running_loss).
ProgressCallback = Callable[[int, int, int, float], None]
PROGRESS_EVERY = 100


def train(
    train_split: MnistSplit,
    test_split: MnistSplit,
    config: TrainConfig,
    device: torch.device,
    on_progress: ProgressCallback | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> TrainResult:
    """Train a fresh network; the same seed on the same device gives the same weights."""
    torch.manual_seed(config.seed)
    shuffle_generator = torch.Generator().manual_seed(config.seed)
    model = NeuralNetwork(hidden_size=config.hidden_size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, **_fastest_adam(device))
    loss_fn = nn.CrossEntropyLoss()
    inputs = pixels_to_input(train_split.images).to(device)
    labels = train_split.labels.to(device)
    test_inputs = pixels_to_input(test_split.images).to(device)
    steps = -(-len(labels) // config.batch_size)

    result = TrainResult(model=model)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        # A fresh permutation per epoch cut into batches: the batches a shuffled DataLoader
        # would draw, gathered straight from memory without per-sample Python work.
        order = torch.randperm(len(labels), generator=shuffle_generator).to(device)
        loss_sum = torch.zeros((), device=device)
        for step, batch in enumerate(order.split(config.batch_size), start=1):
            loss = loss_fn(model(inputs.index_select(0, batch)), labels.index_select(0, batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            if on_progress is not None and step % PROGRESS_EVERY == 0:
                on_progress(epoch, step, steps, loss_sum.item() / step)
        mean_loss = loss_sum.item() / steps
        accuracy = evaluate(model, test_inputs, test_split.labels).accuracy
        epoch_result = EpochResult(epoch, mean_loss, accuracy, time.perf_counter() - started)
        result.epochs.append(epoch_result)
        if on_epoch is not None:
            on_epoch(epoch_result)
    model.eval()
    return result


def _fastest_adam(device: torch.device) -> dict[str, bool]:
    """The fused Adam kernel runs the same update in one pass over all parameters."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {}
