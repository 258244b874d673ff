"""Errors a client can cause, each with its HTTP status and the reason label used in metrics.

They derive from Starlette's HTTPException so that one raised while FastAPI reads the request
body (the upload limits do that) reaches the error handler unchanged instead of being turned
into a generic 400.
"""

from starlette.exceptions import HTTPException


class ClientError(HTTPException):
    """Answered as `{"detail": message}` with `status_code`."""

    status_code = 400
    reason = "bad_request"
    response_headers: dict[str, str] | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=type(self).status_code, detail=detail, headers=self.response_headers)


class InvalidImageError(ClientError):
    reason = "invalid_image"


class ImageTooLargeError(ClientError):
    """The image declares more pixels than allowed: refused before its pixels are decoded."""

    reason = "decompression_bomb"


class NoInkError(ClientError):
    reason = "no_ink"


class BadBatchError(ClientError):
    reason = "bad_batch"


class UnsupportedMediaTypeError(ClientError):
    status_code = 415
    reason = "unsupported_media_type"


class PayloadTooLargeError(ClientError):
    status_code = 413
    reason = "payload_too_large"
    # The rest of the body may still be on its way; closing is the only way not to read it.
    response_headers = {"Connection": "close"}  # noqa: RUF012


class UnauthorizedError(ClientError):
    status_code = 401
    reason = "unauthorized"
    response_headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012


class BodyTimeoutError(ClientError):
    status_code = 408
    reason = "body_timeout"
    response_headers = {"Connection": "close"}  # noqa: RUF012


class OverloadedError(ClientError):
    status_code = 503
    reason = "overloaded"
    response_headers = {"Retry-After": "1"}  # noqa: RUF012


class NotReadyError(ClientError):
    status_code = 503
    reason = "not_ready"
    response_headers = {"Retry-After": "1"}  # noqa: RUF012


class ModelNotFoundError(ClientError):
    """No served model has this name, or the model has no such version."""

    status_code = 404
    reason = "model_not_found"


class MissingFieldError(ClientError):
    """The multipart body has no file in the field the endpoint reads."""

    status_code = 422
    reason = "validation"
