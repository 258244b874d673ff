"""The optional API key: when API_KEY is set, model routes require it; unset, all is open.

A route needs the key when it depends on `require_api_key` (its router is included with that
dependency when API_KEY is set): FastAPI then runs the dependency, and the front, for the routes it
serves itself, sees the dependency in the declaration and runs the same check, `check_api_key`.
The dependency's two scheme parameters are what declares both schemes in the OpenAPI document,
for the Authorize button in /docs.
"""

import hmac
from collections.abc import Iterable

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
    _bearer_scheme: HTTPAuthorizationCredentials | None = Security(_bearer),
    _header_scheme: str | None = Security(_header),
) -> None:
    expected: str | None = request.app.state.settings.api_key
    if expected is not None:
        check_api_key(request.scope, expected)


def check_api_key(scope: Scope, expected: str) -> None:
    """The key in the raw ASGI headers."""
    check_credentials(
        ((name.decode(), value.decode("latin-1")) for name, value in scope["headers"] if name in _KEY_HEADERS), expected
    )


_KEY_HEADERS = (b"x-api-key", b"authorization")


def check_credentials(headers: Iterable[tuple[str, str]], expected: str) -> None:
    """`X-API-Key: <key>` or `Authorization: Bearer <key>` among these headers (lower-case names, as
    ASGI and gRPC metadata give them), or UnauthorizedError."""
    supplied: list[str] = []
    for name, value in headers:
        if name == "x-api-key":
            supplied.append(value)
        elif name == "authorization":
            scheme, _, credentials = value.partition(" ")
            if scheme.lower() == "bearer":
                supplied.append(credentials.strip())
    # compare_digest takes the same time wherever the strings differ, so response times
    # reveal nothing about how much of a guess was right.
    if not any(hmac.compare_digest(key.encode(), expected.encode()) for key in supplied):
        raise UnauthorizedError("missing or invalid API key: send Authorization: Bearer <key> or X-API-Key: <key>")
