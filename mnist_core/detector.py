"""The digit detector a model version may carry beside its classifier: is the input a digit at all?

A classifier trained on digits alone calls anything a digit, often with high confidence (letters,
scribbles, noise: the README has the figures). The detector is a second small network trained
for that question on digits and on generated non-digits (training/nondigits.py); its softmax's
second output is the probability that the input is a digit. It reads the same 28x28 input the
classifier's contract starts from, and lives in the version folder as `detector.pt`, declared in
model.json under "detector", so it is checked, gated and swapped with the classifier.
"""

from mnist_core.architectures import Architecture, feed_forward_serving_form
from mnist_core.contract import INPUT_SIZE
from mnist_core.network import NeuralNetwork

DETECTOR_FILENAME = "detector.pt"
DIGIT_OUTPUT = 1  # the softmax column that is "a digit"; column 0 is "not a digit"
DETECTOR_OUTPUTS = 2


def describe_detector(hidden_size: int) -> str:
    return f"{INPUT_SIZE} -> {hidden_size} -> ReLU -> {DETECTOR_OUTPUTS} (not a digit, a digit)"


DIGIT_DETECTOR = Architecture(
    name="DigitDetector",
    parameter_names=("hidden_size",),
    build=lambda hidden_size: NeuralNetwork(num_classes=DETECTOR_OUTPUTS, hidden_size=hidden_size),
    describe=describe_detector,
    serving_form=feed_forward_serving_form,
)
DETECTOR_ARCHITECTURES = {DIGIT_DETECTOR.name: DIGIT_DETECTOR}
