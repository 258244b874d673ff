"""What both protocol front doors need from a request: the inference core, once the models are loaded."""

from fastapi import Request

from app.errors import NotReadyError
from app.inference.pipeline import InferenceCore


def inference_core(request: Request) -> InferenceCore:
    core: InferenceCore | None = request.app.state.core
    if core is None:
        raise NotReadyError("the models are not loaded yet; retry in a moment")
    return core
