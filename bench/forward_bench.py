"""The network's forward pass, three ways side by side in one process: the served form
(app.inference.classifier.ServedScores), the nn.Module, and the frozen TorchScript graph it replaced.

    .venv/bin/python bench/forward_bench.py

One torch thread, as a worker runs; best of five runs of a loop per form and batch size, in
microseconds per call. Also prints how far each form's scores are from the module's.
"""

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.inference.classifier import ServedScores  # noqa: E402
from mnist_core.network import NeuralNetwork  # noqa: E402


def _module_scores(network: NeuralNetwork) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda inputs: torch.softmax(network(inputs), dim=1)


def _frozen_graph(network: NeuralNetwork) -> Callable[[torch.Tensor], torch.Tensor]:
    class Scores(torch.nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return torch.softmax(network(inputs), dim=1)

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        return torch.jit.freeze(torch.jit.trace(Scores().eval(), torch.zeros(1, 784)))


def _microseconds(form: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, calls: int) -> float:
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
    network = NeuralNetwork()
    network.load_state_dict(torch.load(REPO / "models" / "mnist" / "1" / "model.pt", weights_only=True))
    network.eval().requires_grad_(False)
    forms = {
        "served (addmm)": ServedScores(network),
        "nn.Module": _module_scores(network),
        "frozen TorchScript": _frozen_graph(network),
    }
    print(f"torch {torch.__version__}, 1 thread; microseconds per call (best of 5)")
    for batch in (1, 64):
        inputs = torch.rand(batch, 784, generator=torch.Generator().manual_seed(batch))
        reference = forms["nn.Module"](inputs)
        for name, form in forms.items():
            difference = float((form(inputs) - reference).abs().max())
            microseconds = _microseconds(form, inputs, 20_000 if batch == 1 else 3_000)
            print(f"batch {batch:>2}  {name:<20} {microseconds:8.1f} us   max |score - module's| {difference:.1e}")


if __name__ == "__main__":
    main()
