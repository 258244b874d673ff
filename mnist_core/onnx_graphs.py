"""ONNX graphs written node by node from a network's weights, for onnxruntime on the CPU.

Nothing is traced or exported (see mnist_core.serving). Every network here ends in the same head,
fc1 -> ReLU -> fc2 -> softmax, after whatever turns the (N, 784) input into features; tests check
each graph's scores against its module's.
"""

from typing import Any

from torch import nn

from mnist_core.contract import INPUT_SIZE

# Opset 17 and IR version 8 are read by every onnxruntime since 1.14, whatever onnx wrote it.
OPSET = 17
IR_VERSION = 8


def head_nodes(features: str) -> list[Any]:
    """fc1 -> ReLU -> fc2 -> softmax from the tensor named `features` to "probabilities"."""
    from onnx import helper

    return [
        helper.make_node("Gemm", [features, "fc1.weight", "fc1.bias"], ["fc1"], transB=1),
        helper.make_node("Relu", ["fc1"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "fc2.weight", "fc2.bias"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]


def scores_model(name: str, network: nn.Module, nodes: list[Any], constants: tuple[Any, ...] = ()) -> bytes:
    """A serialised ONNX model from float32 "input" (N, 784) to "probabilities" (N, fc2's outputs),
    made of `nodes`, with the network's weights (by their state_dict names) and `constants`."""
    from onnx import TensorProto, checker, helper, numpy_helper

    weights = [
        numpy_helper.from_array(tensor.detach().cpu().numpy(), key) for key, tensor in network.state_dict().items()
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", INPUT_SIZE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", network.fc2.out_features])],
        [*constants, *weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    checker.check_model(model)
    return model.SerializeToString()


def feed_forward_onnx_model(network: nn.Module) -> bytes:
    """The feed-forward network (mnist_core.network.NeuralNetwork, any width and output count)."""
    return scores_model("feed_forward", network, head_nodes("input"))
