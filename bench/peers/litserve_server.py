"""LitServe peer: a LitAPI behind one API server and one inference worker on the CPU.

usage: python litserve_server.py --weights MODEL_PT --port PORT
Upload: multipart field `file` at /predict; LitServe (FastAPI underneath) parses the form in its
API server and `decode_request` reads the starlette UploadFile, as in LitServe's file-upload
example. No dynamic batching (LitServe's default).
"""

import argparse
import signal
from typing import Any

import litserve as ls
import numpy as np
import peer_model


class MnistAPI(ls.LitAPI):
    def __init__(self, weights: str) -> None:
        super().__init__()
        self.weights = weights

    def setup(self, device: str) -> None:
        self.network = peer_model.load_network(self.weights)

    # LitServe builds the route from the signatures of decode_request and encode_response: an annotated
    # `request` would turn into a query parameter and an annotated return into a response model, so
    # both stay bare, as in LitServe's examples. `request` is the parsed form.
    def decode_request(self, request):
        return peer_model.decode_png(request["file"].file.read())

    def predict(self, pixels: np.ndarray) -> dict[str, Any]:
        return peer_model.classify(self.network, pixels[None])[0]

    def encode_response(self, output):
        return output


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ls.LitServer(MnistAPI(args.weights), accelerator="cpu", devices=1, workers_per_device=1, timeout=30)

    def shut_down(signum: int, frame: object) -> None:
        # LitServe stops its API server and inference worker cleanly on Ctrl+C only.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shut_down)
    # log_level warning: no access log line per request.
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
