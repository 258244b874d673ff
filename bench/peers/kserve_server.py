"""KServe peer: a `kserve.Model` served by KServe's Python model server, V1 protocol, one worker.

usage: python kserve_server.py --weights MODEL_PT --http_port PORT --workers 1 --enable_grpc false
(plus any other flag of kserve.ModelServer). KServe has no multipart route: its documented image
input is V1 JSON with the PNG base64-encoded, POST /v1/models/mnist:predict
{"instances": [{"image": {"b64": "..."}}]}, which `preprocess` decodes; one request's instances
go through one forward pass (the Python server has no dynamic batching).
"""

import argparse
import base64
import logging
from typing import Any

import kserve
import numpy as np
import peer_model


class MnistModel(kserve.Model):
    def __init__(self, name: str, weights: str) -> None:
        super().__init__(name)
        self.weights = weights
        self.load()

    def load(self) -> bool:
        self.network = peer_model.load_network(self.weights)
        self.ready = True
        return self.ready

    def preprocess(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> np.ndarray:
        images = [base64.b64decode(item["image"]["b64"]) for item in payload["instances"]]
        return np.stack([peer_model.decode_png(image) for image in images])

    def predict(self, pixels: np.ndarray, headers: dict[str, str] | None = None) -> dict[str, Any]:
        return {"predictions": peer_model.classify(self.network, pixels)}


def main() -> None:
    # KServe reads its own flags (--http_port, --workers, ...) from sys.argv when it is imported.
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--weights", required=True)
    args, _ = parser.parse_known_args()
    server = kserve.ModelServer()
    # The logging KServe just configured writes lines per request: uvicorn's access log, and the timings
    # of the TimingMiddleware that KServe always installs (kserve.trace). Off, as on every peer.
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([MnistModel("mnist", args.weights)])


if __name__ == "__main__":
    main()
