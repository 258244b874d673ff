"""The floor for the gRPC benchmark: grpc.aio and the model call, nothing of the service's door.

The same server library on the same event loop (grpc.aio on uvloop, one torch thread) answering
ModelInfer with the newest `mnist` version's model call alone: the request's raw tensor scaled
to [0, 1] and classified, the probabilities and labels sent back raw. No checks, limits, metrics,
access log, micro-batching or image preprocessing: what the service's gRPC door could reach at
best with grpc.aio. `GRPC_PORT=... python -m bench.bare_grpc`.
"""

import os
import sys
from pathlib import Path

import grpc
import numpy as np
import torch
import uvloop

from app.inference.classifier import DigitClassifier, load_classifier, split_assessment
from app.protocols.grpc import messages
from app.repository.layout import scan_repository

REPOSITORY = Path(__file__).resolve().parent.parent / "models"
MODEL = "mnist"
REQUEST, RESPONSE = messages.METHODS["ModelInfer"]


def newest_classifier() -> DigitClassifier:
    newest = max((folder for folder in scan_repository(REPOSITORY) if folder.model == MODEL), key=lambda f: f.version)
    return load_classifier(newest.weights, "cpu", name=MODEL, version=newest.version)


async def serve(port: int) -> None:
    classifier = newest_classifier()
    version = str(classifier.info.version)

    async def infer(request, context):
        raw = request.raw_input_contents[0]
        pixels = np.frombuffer(raw, np.uint8 if request.inputs[0].datatype == "UINT8" else np.float32)
        inputs = pixels.reshape(-1, 784).astype(np.float32)
        if pixels.dtype == np.uint8:
            inputs /= 255
        probabilities, _ = split_assessment(classifier.assess_inputs(inputs))
        labels = probabilities.argmax(axis=1).astype(np.int64)
        response = RESPONSE(model_name=MODEL, model_version=version, id=request.id)
        response.outputs.add(name="probabilities", datatype="FP32", shape=list(probabilities.shape))
        response.outputs.add(name="label", datatype="INT64", shape=list(labels.shape))
        response.raw_output_contents.extend([np.ascontiguousarray(probabilities).tobytes(), labels.tobytes()])
        return response

    handler = grpc.unary_unary_rpc_method_handler(
        infer, request_deserializer=REQUEST.FromString, response_serializer=RESPONSE.SerializeToString
    )
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(messages.SERVICE, {"ModelInfer": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"bare gRPC on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(uvloop.run(serve(int(os.environ["GRPC_PORT"]))))
