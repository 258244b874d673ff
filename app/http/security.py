"""The optional API key: when API_KEY is set, protected routes require it; unset, all is open."""

import hmac

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

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
    if expected is None:
        return
    supplied = [key for key in (header_key, bearer.credentials if bearer else None) if key is not None]
    # compare_digest takes the same time wherever the strings differ, so response times
    # reveal nothing about how much of a guess was right.
    if not any(hmac.compare_digest(key.encode(), expected.encode()) for key in supplied):
        raise UnauthorizedError("missing or invalid API key: send Authorization: Bearer <key> or X-API-Key: <key>")
