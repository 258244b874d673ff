"""The Open Inference Protocol (KServe V2) REST front door, with Triton's binary tensor data extension."""

from app.protocols.v2.routes import document_schemas, infer_router, model_router, server_router

__all__ = ["document_schemas", "infer_router", "model_router", "server_router"]
