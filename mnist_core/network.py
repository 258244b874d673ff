"""The classic MNIST feed-forward network: 784 -> hidden -> ReLU -> 10."""

import torch
from torch import nn

from mnist_core.contract import INPUT_SIZE, NUM_CLASSES

DEFAULT_HIDDEN_SIZE = 50


class NeuralNetwork(nn.Module):
    """The reference design; its parameter names (`fc1`, `fc2`) are part of the weights format."""

    def __init__(
        self,
        input_size: int = INPUT_SIZE,
        num_classes: int = NUM_CLASSES,
        hidden_size: int = DEFAULT_HIDDEN_SIZE,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def hidden_size_of(state_dict: dict[str, torch.Tensor]) -> int:
    """The hidden width a state_dict was trained with, read from the shape of `fc1.weight`."""
    return state_dict["fc1.weight"].shape[0]


def describe_architecture(hidden_size: int) -> str:
    return f"{INPUT_SIZE} -> {hidden_size} -> ReLU -> {NUM_CLASSES}"
