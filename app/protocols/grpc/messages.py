"""The protocol's messages, built from inference.proto's compiled descriptor (`make proto` writes
inference.binpb from it with grpcio-tools' protoc) in a descriptor pool of their own.

Not protoc's generated Python: that registers `inference.*` in protobuf's process-wide pool, where
tritonclient.grpc and kserve register the same names, so a process could not import both the
service and one of those clients (the tests do; so might a user's program that embeds the app).
"""

from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "inference.GRPCInferenceService"
DESCRIPTOR_SET = Path(__file__).with_name("inference.binpb")

_pool = descriptor_pool.DescriptorPool()
for _file in descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file:
    _pool.Add(_file)


def _message(name: str) -> type:
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"inference.{name}"))


ServerLiveRequest = _message("ServerLiveRequest")
ServerLiveResponse = _message("ServerLiveResponse")
ServerReadyRequest = _message("ServerReadyRequest")
ServerReadyResponse = _message("ServerReadyResponse")
ModelReadyRequest = _message("ModelReadyRequest")
ModelReadyResponse = _message("ModelReadyResponse")
ServerMetadataRequest = _message("ServerMetadataRequest")
ServerMetadataResponse = _message("ServerMetadataResponse")
ModelMetadataRequest = _message("ModelMetadataRequest")
ModelMetadataResponse = _message("ModelMetadataResponse")
ModelInferRequest = _message("ModelInferRequest")
ModelInferResponse = _message("ModelInferResponse")
InferParameter = _message("InferParameter")

# Each method of the service: its request and response types, from the service's own descriptor.
METHODS: dict[str, tuple[type, type]] = {
    method.name: (
        message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
    )
    for method in _pool.FindServiceByName(SERVICE).methods
}
