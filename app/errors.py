"""The service's domain errors: requests it refuses, in words for the client.

They know nothing of HTTP. Each protocol door gives them its own shape in one place: the HTTP
doors in app/http/error_handlers.py (a status, headers, and `{"detail"}` or V2's `{"error"}`).
`reason` is the label the refusal is counted under in metrics, whatever the door.
"""


class ClientError(Exception):
    """A request refused because of what the client sent or asked for."""

    reason = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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
    reason = "unsupported_media_type"


class PayloadTooLargeError(ClientError):
    """The request or one of its files is over a size limit; the rest of it may still be arriving."""

    reason = "payload_too_large"


class UnauthorizedError(ClientError):
    reason = "unauthorized"


class BodyTimeoutError(ClientError):
    """The request's body stopped arriving; the connection cannot be reused."""

    reason = "body_timeout"


class OverloadedError(ClientError):
    """The service cannot take this request now; the same request may succeed in a moment."""

    reason = "overloaded"


class NotReadyError(ClientError):
    """The models are not loaded yet; the same request may succeed in a moment."""

    reason = "not_ready"


class ModelNotFoundError(ClientError):
    """No served model has this name, or the model has no such version."""

    reason = "model_not_found"


class MissingFieldError(ClientError):
    """The multipart body has no file in the field the endpoint reads."""

    reason = "validation"


class StartError(Exception):
    """The service cannot start as configured (a port it must listen on is taken): one line for the
    operator, not a traceback."""
