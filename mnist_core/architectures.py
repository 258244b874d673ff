"""The networks a model version may declare, and the checks that its weights are the declared network's.

A version's model.json names its network as Triton's model configuration names a platform:

    "architecture": {"class": "ConvNet", "parameters": {"channels": [16, 32], "hidden_size": 64}, ...}

The service builds exactly that network, refuses weights that are not its state_dict (keys,
shapes, dtypes), and runs it in the architecture's serving form. Adding an architecture is one
module defining it and one entry in ARCHITECTURES (and a training recipe that uses it).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mnist_core.contract import INPUT_SIZE
from mnist_core.convnet import ConvNet, convnet_onnx_model, describe_convnet
from mnist_core.network import DEFAULT_HIDDEN_SIZE, NeuralNetwork, describe_architecture, hidden_size_of
from mnist_core.onnx_graphs import feed_forward_onnx_model
from mnist_core.serving import AddmmScores, ModuleScores, OnnxRuntimeScores, ScoreFunction


class ArchitectureError(ValueError):
    """A declaration names no known architecture, or parameters that do not build it."""


class WeightsMismatchError(ValueError):
    """Weights that are not the state_dict of the network they are declared for."""


@dataclass(frozen=True)
class Architecture:
    name: str  # the class named in model.json
    parameter_names: tuple[str, ...]  # what model.json's "parameters" must give, all of them
    build: Callable[..., nn.Module]  # build(**parameters): a fresh network
    describe: Callable[..., str]  # describe(**parameters): its layers, for people and dashboards
    # The form the service runs it in, on the device its weights are on.
    serving_form: Callable[[nn.Module, torch.device], ScoreFunction]
    logits_layer: str = "fc2"  # the linear layer whose outputs are the logits


def _onnxruntime_on_cpu(
    onnx_model: Callable[[nn.Module], bytes], elsewhere: Callable[[nn.Module, torch.device], ScoreFunction]
) -> Callable[[nn.Module, torch.device], ScoreFunction]:
    """A serving form: the network's ONNX graph in onnxruntime on the CPU, `elsewhere` on another device."""

    def serving_form(network: nn.Module, device: torch.device) -> ScoreFunction:
        if device.type == "cpu":
            return OnnxRuntimeScores(onnx_model(network))
        return elsewhere(network, device)

    return serving_form


# The feed-forward networks (the classifier and the digit detector) run as tensor calls off the CPU.
feed_forward_serving_form = _onnxruntime_on_cpu(feed_forward_onnx_model, AddmmScores)


FEED_FORWARD = Architecture(
    name="NeuralNetwork",
    parameter_names=("hidden_size",),
    build=lambda hidden_size: NeuralNetwork(hidden_size=hidden_size),
    describe=describe_architecture,
    serving_form=feed_forward_serving_form,
)
CONVOLUTIONAL = Architecture(
    name="ConvNet",
    parameter_names=("channels", "hidden_size"),
    build=ConvNet,
    describe=describe_convnet,
    serving_form=_onnxruntime_on_cpu(convnet_onnx_model, ModuleScores),
)
ARCHITECTURES = {architecture.name: architecture for architecture in (FEED_FORWARD, CONVOLUTIONAL)}


@dataclass(frozen=True)
class DeclaredNetwork:
    """An architecture with its parameters: one buildable network."""

    architecture: Architecture
    parameters: Mapping[str, Any]

    def build(self) -> nn.Module:
        return self.architecture.build(**self.parameters)

    @property
    def layers(self) -> str:
        return self.architecture.describe(**self.parameters)

    def declaration(self, network: nn.Module) -> dict[str, Any]:
        """What model.json records under "architecture" for `network`, built from this."""
        return {
            "class": self.architecture.name,
            "parameters": dict(self.parameters),
            "layers": self.layers,
            "input_size": INPUT_SIZE,
            "num_classes": getattr(network, self.architecture.logits_layer).out_features,
            "state_dict_keys": list(network.state_dict()),
        }


# The seed's 784-50-10 network.
SEED_NETWORK = DeclaredNetwork(FEED_FORWARD, {"hidden_size": DEFAULT_HIDDEN_SIZE})


def declared_network(
    declaration: Mapping[str, Any] | None,
    state_dict: Any,
    architectures: Mapping[str, Architecture] = ARCHITECTURES,
) -> DeclaredNetwork:
    """The network a version's model.json "architecture" declares, one of `architectures`.

    Without a declaration (a lone weights file) it is the seed's feed-forward network, as wide as
    the weights' fc1. Versions written before parameters were recorded give the feed-forward
    network's hidden_size beside "class"; that still reads.
    """
    if declaration is None:
        return DeclaredNetwork(FEED_FORWARD, {"hidden_size": _hidden_rows(state_dict)})
    if not isinstance(declaration, Mapping):
        raise ArchitectureError('its "architecture" must be a JSON object')
    name = declaration.get("class")
    architecture = architectures.get(name) if isinstance(name, str) else None
    if architecture is None:
        known = ", ".join(sorted(architectures))
        raise ArchitectureError(f"architecture {str(name)[:80]!r} is not known; known architectures: {known}")
    parameters = declaration.get("parameters")
    if parameters is None:
        parameters = {key: declaration[key] for key in architecture.parameter_names if key in declaration}
    if not isinstance(parameters, Mapping) or set(parameters) != set(architecture.parameter_names):
        raise ArchitectureError(
            f"architecture {name} takes the parameters {list(architecture.parameter_names)}, "
            f"declared {sorted(parameters) if isinstance(parameters, Mapping) else parameters!r}"
        )
    return DeclaredNetwork(architecture, dict(parameters))


def _hidden_rows(state_dict: Any) -> int:
    """fc1's width, read from the weights; where there is none, the check against the default
    network says what is wrong with them."""
    weight = state_dict.get("fc1.weight") if isinstance(state_dict, dict) else None
    if isinstance(weight, torch.Tensor) and weight.dim() == 2 and weight.shape[0] > 0:
        return hidden_size_of(state_dict)
    return DEFAULT_HIDDEN_SIZE


def network_with_weights(declared: DeclaredNetwork, state_dict: Any) -> nn.Module:
    """The declared network holding `state_dict`, after checking that they are its weights."""
    try:
        network = declared.build()
    except (TypeError, ValueError, RuntimeError) as error:
        raise ArchitectureError(
            f"parameters {dict(declared.parameters)} do not build a {declared.architecture.name} ({error})"
        ) from None
    check_weights(network.state_dict(), state_dict, declared.layers)
    network.load_state_dict(state_dict)
    return network


def apply_temperature(network: nn.Module, architecture: Architecture, temperature: float) -> None:
    """Divide the network's logits by `temperature`, folded into its last layer's weights and bias:
    softmax(x W^T / T + b / T) is softmax(logits / T), at no cost per call in any serving form."""
    layer = getattr(network, architecture.logits_layer)
    with torch.no_grad():
        layer.weight.div_(temperature)
        layer.bias.div_(temperature)


def check_weights(expected: Mapping[str, torch.Tensor], state_dict: Any, layers: str) -> None:
    """Raise WeightsMismatchError unless `state_dict` has exactly `expected`'s keys, shapes and dtypes."""
    if not isinstance(state_dict, dict) or set(state_dict) != set(expected):
        found = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
        raise WeightsMismatchError(f"expected a state_dict with keys {list(expected)}, found {found}")
    for key, tensor in expected.items():
        given = state_dict[key]
        if not isinstance(given, torch.Tensor) or not given.is_floating_point():
            raise WeightsMismatchError(f"every entry must be a floating-point tensor; {key} is not")
        if given.shape != tensor.shape:
            raise WeightsMismatchError(
                f"{key} has shape {tuple(given.shape)}, expected {tuple(tensor.shape)} for a {layers} network"
            )
        if given.dtype != tensor.dtype:
            raise WeightsMismatchError(f"{key} holds {given.dtype}, expected {tensor.dtype}")
