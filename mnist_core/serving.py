"""The forms the service runs networks in: each gives the module's own softmax scores, faster.

A form takes float32 network inputs (N, 784) as a numpy array and returns float32 softmax
probabilities (N, the network's outputs), whatever device it computes on.
tests/test_architectures.py checks every form against its module within 1e-5.

None of them traces or scripts the module: each traced TorchScript graph registers types in a
process-wide compilation unit that outlives it, so every version swap grew the worker (and
torch.jit is deprecated). onnxruntime is imported only where a form needs it.
"""

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mnist_core.network import NeuralNetwork

ScoreFunction = Callable[[np.ndarray], np.ndarray]


class AddmmScores:
    """The feed-forward network's forward pass and softmax as three tensor calls on its weights, on
    a device onnxruntime does not run on here (CUDA).

    nn.Module's per-layer dispatch costs more than the arithmetic of a 784-50-10 network; the same
    operations written out are faster, and free nothing but themselves when a version leaves.
    """

    def __init__(self, network: NeuralNetwork, device: torch.device) -> None:
        self._device = device
        # Transposed once, so each call is two fused multiply-adds: x @ W1^T + b1, then relu.
        self._hidden_weight = network.fc1.weight.detach().t().contiguous()
        self._hidden_bias = network.fc1.bias.detach()
        self._output_weight = network.fc2.weight.detach().t().contiguous()
        self._output_bias = network.fc2.bias.detach()

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        prepared = torch.from_numpy(inputs).to(self._device)
        hidden = torch.addmm(self._hidden_bias, prepared, self._hidden_weight).relu_()
        return torch.softmax(torch.addmm(self._output_bias, hidden, self._output_weight), dim=1).cpu().numpy()


class ModuleScores:
    """The module itself, then softmax: the form for devices that onnxruntime is not built for here."""

    def __init__(self, network: nn.Module, device: torch.device) -> None:
        self._network = network
        self._device = device

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        # The weights require no gradient, so nothing is recorded without an inference_mode block.
        logits = self._network(torch.from_numpy(inputs).to(self._device))
        return torch.softmax(logits, dim=1).cpu().numpy()


class OnnxRuntimeScores:
    """An ONNX graph (serialised ModelProto) run by onnxruntime on the CPU, with torch's thread count.

    At the batch sizes served, onnxruntime's CPU kernels beat eager PyTorch: several times over for
    convolutions, and up to 4x for the feed-forward networks' matrix products (the README's
    performance section has the figures).
    """

    def __init__(self, model: bytes) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Idle intra-op threads would otherwise spin between requests, burning the cores that the
        # other worker processes serve on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        [graph_input] = self._session.get_inputs()
        self._input_name = graph_input.name

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        [probabilities] = self._session.run(None, {self._input_name: np.ascontiguousarray(inputs, np.float32)})
        return probabilities
