"""The optional API key: when API_KEY is set, model routes require it; unset, all is open.

Routes that FastAPI dispatches check it through `require_api_key` (which also declares both
schemes in the OpenAPI document, for the Authorize button in /docs); the prediction routes that
the front dispatches directly check it through `check_api_key`. Both end in `_verify`.
"""

import hmac

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from app.errors import UnauthorizedError

_NOTE = "Needed only when the server sets API_KEY."
_bearer = HTTPBearer(auto_error=False, scheme_name="BearerKey", description=f"`Authorization: Bearer <key>`. {_NOTE}")
_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKeyHeader", description=f"`X-API-Key: <key>`. {_NOTE}"
)


async def require_api_key(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
    header_key: str | None = Security(_header),
) -> None:
    expected: str | None = request.app.state.settings.api_key
    if expected is not None:
        _verify(expected, [header_key, bearer.credentials if bearer else None])


def check_api_key(scope: Scope, expected: str) -> None:
    """The same check on raw ASGI headers: `X-API-Key: <key>` or `Authorization: Bearer <key>`."""
    supplied: list[str | None] = []
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            supplied.append(value.decode("latin-1"))
        elif name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                supplied.append(credentials.strip())
    _verify(expected, supplied)


def _verify(expected: str, supplied: list[str | None]) -> None:
    # compare_digest takes the same time wherever the strings differ, so response times
    # reveal nothing about how much of a guess was right.
    if not any(key is not None and hmac.compare_digest(key.encode(), expected.encode()) for key in supplied):
        raise UnauthorizedError("missing or invalid API key: send Authorization: Bearer <key> or X-API-Key: <key>")
