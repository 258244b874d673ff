"""The recipes `python -m training --recipe NAME` trains: the reference one, the robust one, the CNN.

The reference and robust recipes train the seed's 784-50-10 network with its state_dict keys; the
cnn recipe trains the small convolutional network (mnist_core.convnet). The choices come from
measurements on the MNIST test set and on the robustness benchmark (bench/robust_bench.py); what
was tried and dropped is listed in the README.
"""

from dataclasses import dataclass

from mnist_core.architectures import CONVOLUTIONAL, DeclaredNetwork
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

CNN = Recipe(
    name="cnn",
    summary="the small CNN (two 5x5 convolutions of 16 and 32 channels, a 64-unit layer), trained as the robust "
    "recipe is plus low-resolution copies of 30 %% of the digits, over 15 epochs",
    model_name="mnist-cnn",
    config=TrainConfig(
        network=DeclaredNetwork(CONVOLUTIONAL, {"channels": [16, 32], "hidden_size": 64}),
        epochs=15,
        batch_size=128,
        learning_rate=0.002,
        lr_schedule=COSINE_LR,
        augmentation=AugmentConfig(low_resolution_probability=0.3),
        input_steps=(DESKEW,),
    ),
)

RECIPES = {recipe.name: recipe for recipe in (REFERENCE, ROBUST, CNN)}
