"""The native API: multipart image uploads in, `{"class", "confidence", "scores"}` out."""

from app.protocols.native.routes import model_router, operations_router, prediction_router

__all__ = ["model_router", "operations_router", "prediction_router"]
