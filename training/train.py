"""The training loop, batched from tensors held in memory, for any declared network and recipe."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mnist_core.architectures import SEED_NETWORK, DeclaredNetwork
from mnist_core.contract import IMAGE_SIDE, INPUT_SIZE, network_inputs
from training.augment import AugmentConfig, augment
from training.data import MnistSplit
from training.evaluate import evaluate

CONSTANT_LR = "constant"
# The learning rate follows half a cosine from its starting value down to zero over all steps.
COSINE_LR = "cosine"


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the reference's: Adam, lr 0.001, batch 64, 10 epochs, cross-entropy."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.001
    network: DeclaredNetwork = SEED_NETWORK
    seed: int = 0
    lr_schedule: str = CONSTANT_LR
    augmentation: AugmentConfig | None = None  # distort every training batch on the fly
    input_steps: tuple[str, ...] = ()  # the model's input contract steps (mnist_core.contract)
    # Training digits held out from training to fit the served temperature on (training/calibrate.py).
    calibration_digits: int = 0


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    loss: float  # mean cross-entropy over the epoch's batches
    test_accuracy: float  # percent
    seconds: float


@dataclass
class TrainResult:
    model: nn.Module
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
    # Its own generator, so the reference recipe (no augmentation) draws exactly what it always did.
    augment_generator = torch.Generator().manual_seed(augmentation_seed(config))
    model = config.network.build().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, **_fastest_adam(device))
    loss_fn = nn.CrossEntropyLoss()
    inputs = train_split.inputs().to(device)
    labels = train_split.labels.to(device)
    test_inputs = contract_inputs(test_split.inputs(), config.input_steps).to(device)
    steps = -(-len(labels) // config.batch_size)
    schedule = _lr_schedule(optimizer, config, config.epochs * steps)

    result = TrainResult(model=model)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        # A fresh permutation per epoch cut into batches: the batches a shuffled DataLoader
        # would draw, gathered straight from memory without per-sample Python work.
        order = torch.randperm(len(labels), generator=shuffle_generator).to(device)
        loss_sum = torch.zeros((), device=device)
        for step, batch in enumerate(order.split(config.batch_size), start=1):
            batch_inputs = inputs.index_select(0, batch)
            if config.augmentation is not None:
                batch_inputs = augmented(batch_inputs, config, augment_generator)
            loss = loss_fn(model(batch_inputs), labels.index_select(0, batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
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


def augmentation_seed(config: TrainConfig) -> int:
    return config.seed + 1


def augmented(batch_inputs: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """A batch of network inputs distorted, then passed through the model's contract steps."""
    images = batch_inputs.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    distorted = augment(images, config.augmentation, generator).reshape(-1, INPUT_SIZE)
    return contract_inputs(distorted, config.input_steps)


def contract_inputs(inputs: torch.Tensor, steps: tuple[str, ...]) -> torch.Tensor:
    """The contract's steps on a tensor of network inputs: mnist_core's numpy code, on the CPU,
    exactly as the service runs it (on CUDA this costs a copy each way per batch)."""
    if not steps:
        return inputs
    prepared = network_inputs(inputs.detach().cpu().numpy(), {"steps": list(steps)})
    return torch.from_numpy(prepared).to(inputs.device)


def _lr_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.lr_schedule == CONSTANT_LR:
        return None
    if config.lr_schedule == COSINE_LR:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"unknown learning-rate schedule {config.lr_schedule!r}: expected constant or cosine")


def _fastest_adam(device: torch.device) -> dict[str, bool]:
    """The fused Adam kernel runs the same update in one pass over all parameters."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {}
