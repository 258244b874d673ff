"""Each network's forward pass, several ways side by side in one process: the form the service runs
it in (mnist_core.architectures), the nn.Module, a frozen TorchScript graph, and for the
feed-forward networks (the classifier and the digit detector) the tensor calls they run as on CUDA;
then the deskew step that the robust and cnn recipes' input contract puts before the network.

    .venv/bin/python bench/forward_bench.py

One thread, as a worker runs; best of five runs of a loop per form and batch size, in microseconds
per call. Also prints how far each form's scores are from the module's. The networks hold freshly
initialised weights: speed does not depend on their values.
"""

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mnist_core.architectures import CONVOLUTIONAL, FEED_FORWARD, DeclaredNetwork  # noqa: E402
from mnist_core.contract import INPUT_SIZE, deskew  # noqa: E402
from mnist_core.convnet import DEFAULT_CHANNELS  # noqa: E402
from mnist_core.convnet import DEFAULT_HIDDEN_SIZE as CONVNET_HIDDEN_SIZE  # noqa: E402
from mnist_core.detector import DIGIT_DETECTOR  # noqa: E402
from mnist_core.network import DEFAULT_HIDDEN_SIZE, NeuralNetwork  # noqa: E402
from mnist_core.serving import AddmmScores, ModuleScores, ScoreFunction  # noqa: E402
from training.detector import DetectorConfig  # noqa: E402

NETWORKS = [
    DeclaredNetwork(FEED_FORWARD, {"hidden_size": DEFAULT_HIDDEN_SIZE}),
    DeclaredNetwork(DIGIT_DETECTOR, {"hidden_size": DetectorConfig().hidden_size}),
    DeclaredNetwork(CONVOLUTIONAL, {"channels": list(DEFAULT_CHANNELS), "hidden_size": CONVNET_HIDDEN_SIZE}),
]
CPU = torch.device("cpu")


def _frozen_graph(network: nn.Module) -> ScoreFunction:
    class Scores(nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return torch.softmax(network(inputs), dim=1)

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(Scores().eval(), torch.zeros(64, INPUT_SIZE))
        graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    return lambda inputs: graph(torch.from_numpy(inputs)).numpy()


def _microseconds(form: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, calls: int) -> float:
    for _ in range(calls // 10):
        form(inputs)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            form(inputs)
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, 1 thread; microseconds per call (best of 5)")
    for declared in NETWORKS:
        network = declared.build().eval().requires_grad_(False)
        forms = {
            "served form": declared.architecture.serving_form(network, CPU),
            "nn.Module": ModuleScores(network, CPU),
            "TorchScript, frozen and optimised": _frozen_graph(network),
        }
        if isinstance(network, NeuralNetwork):
            forms["tensor calls (the form on CUDA)"] = AddmmScores(network, CPU)
        print(f"\n{declared.architecture.name}: {declared.layers}")
        calls = 20_000 if declared.architecture is FEED_FORWARD else 2_000
        for batch in (1, 4, 64):
            inputs = np.random.default_rng(batch).random((batch, INPUT_SIZE), dtype=np.float32)
            reference = forms["nn.Module"](inputs)
            for name, form in forms.items():
                difference = float(np.abs(form(inputs) - reference).max())
                microseconds = _microseconds(form, inputs, calls // batch * 4 if batch > 1 else calls)
                print(
                    f"batch {batch:>2}  {name:<34} {microseconds:9.1f} us  {microseconds / batch:7.1f} us/image"
                    f"   max |score - module's| {difference:.1e}"
                )
    print("\ndeskew step (mnist_core.contract.deskew)")
    for batch in (1, 4, 64, 2000):
        inputs = np.random.default_rng(batch).random((batch, INPUT_SIZE), dtype=np.float32)
        microseconds = _microseconds(deskew, inputs, max(20, 20_000 // batch))
        print(f"batch {batch:>4}  {microseconds:9.1f} us  {microseconds / batch:7.1f} us/image")


if __name__ == "__main__":
    main()
