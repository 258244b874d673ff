"""TorchServe peer: a custom handler answering `{"class", "confidence", "scores"}` per request.

torch-model-archiver packs this file with the shipped state_dict as its serialized file; the
frontend hands the worker up to `batchSize` requests at a time, each a multipart upload whose
field `file` arrives as bytes. The network is the service's own (`peer_model`, on PYTHONPATH, which
TorchServe passes on to its workers), so the handler loads the state_dict itself instead of
BaseHandler's model-file loading.
"""

import os
from typing import Any

import numpy as np
import peer_model


class MnistHandler:
    def __init__(self) -> None:
        self.network = None

    def initialize(self, context: Any) -> None:
        properties = context.system_properties
        serialized = context.manifest["model"]["serializedFile"]
        self.network = peer_model.load_network(os.path.join(properties["model_dir"], serialized))

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        # One forward pass for the whole batch TorchServe collected, one answer per request in order.
        pixels = np.stack([peer_model.decode_png(bytes(item["file"])) for item in data])
        return peer_model.classify(self.network, pixels)
