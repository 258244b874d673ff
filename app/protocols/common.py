"""What both protocol front doors need: the inference core once the models are loaded, and fast JSON."""

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from app.errors import NotReadyError
from app.inference.pipeline import InferenceCore


def inference_core(request: Request) -> InferenceCore:
    core: InferenceCore | None = request.app.state.core
    if core is None:
        raise NotReadyError("the models are not loaded yet; retry in a moment")
    return core


def json_response(body: Any) -> Response:
    """A 200 JSON answer, encoded by orjson: the standard library's encoder was a visible share of a
    /predict request, orjson's a small one; the numbers parse to the same values."""
    return Response(orjson.dumps(body), media_type="application/json")
