"""A small convolutional network for MNIST: two 5x5 convolutions, each followed by 2x2 max pooling.

It takes the same (N, 784) inputs as the feed-forward network, so both share one input contract
and one preprocessing path; the rows are viewed as 28x28 images inside.
"""

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import nn

from mnist_core.contract import IMAGE_SIDE, NUM_CLASSES
from mnist_core.onnx_graphs import head_nodes, scores_model

KERNEL_SIDE = 5
POOL_SIDE = 2
# Each 5x5 convolution (no padding) trims 4 pixels, each pooling halves: 28 -> 24 -> 12 -> 8 -> 4.
FEATURE_SIDE = ((IMAGE_SIDE - KERNEL_SIDE + 1) // POOL_SIDE - KERNEL_SIDE + 1) // POOL_SIDE
DEFAULT_CHANNELS = (16, 32)
DEFAULT_HIDDEN_SIZE = 64


class ConvNet(nn.Module):
    """conv1 -> ReLU -> pool -> conv2 -> ReLU -> pool -> fc1 -> ReLU -> fc2, on (N, 784) inputs."""

    def __init__(
        self, channels: tuple[int, int] | list[int] = DEFAULT_CHANNELS, hidden_size: int = DEFAULT_HIDDEN_SIZE
    ) -> None:
        super().__init__()
        first, second = channels
        self.conv1 = nn.Conv2d(1, first, KERNEL_SIDE)
        self.conv2 = nn.Conv2d(first, second, KERNEL_SIDE)
        self.fc1 = nn.Linear(second * FEATURE_SIDE * FEATURE_SIDE, hidden_size)
        self.fc2 = nn.Linear(hidden_size, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)
        x = F.max_pool2d(torch.relu(self.conv1(x)), POOL_SIDE)
        x = F.max_pool2d(torch.relu(self.conv2(x)), POOL_SIDE)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def describe_convnet(channels: tuple[int, int] | list[int], hidden_size: int) -> str:
    first, second = channels
    flat = second * FEATURE_SIDE * FEATURE_SIDE
    return (
        f"1x{IMAGE_SIDE}x{IMAGE_SIDE} -> conv{KERNEL_SIDE}x{KERNEL_SIDE} {first} -> ReLU -> maxpool{POOL_SIDE} "
        f"-> conv{KERNEL_SIDE}x{KERNEL_SIDE} {second} -> ReLU -> maxpool{POOL_SIDE} -> {flat} -> {hidden_size} "
        f"-> ReLU -> {NUM_CLASSES}"
    )


def convnet_onnx_model(network: ConvNet) -> bytes:
    """The network as a serialised ONNX model with a softmax output, written from its weights."""
    from onnx import helper, numpy_helper

    image_shape = numpy_helper.from_array(np.array([-1, 1, IMAGE_SIDE, IMAGE_SIDE], dtype=np.int64), "image_shape")
    pooling = {"kernel_shape": [POOL_SIDE, POOL_SIDE], "strides": [POOL_SIDE, POOL_SIDE]}
    nodes = [
        helper.make_node("Reshape", ["input", "image_shape"], ["images"]),
        helper.make_node("Conv", ["images", "conv1.weight", "conv1.bias"], ["conv1"]),
        helper.make_node("Relu", ["conv1"], ["conv1_relu"]),
        helper.make_node("MaxPool", ["conv1_relu"], ["pool1"], **pooling),
        helper.make_node("Conv", ["pool1", "conv2.weight", "conv2.bias"], ["conv2"]),
        helper.make_node("Relu", ["conv2"], ["conv2_relu"]),
        helper.make_node("MaxPool", ["conv2_relu"], ["pool2"], **pooling),
        # Flattening NCHW keeps channel-major order, as torch's flatten(1) does.
        helper.make_node("Flatten", ["pool2"], ["features"], axis=1),
        *head_nodes("features"),
    ]
    return scores_model("convnet", network, nodes, (image_shape,))
