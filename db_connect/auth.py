"""API-key check: one shared key, accepted as a Bearer token or an X-API-Key header.

Both are declared as OpenAPI security schemes, so /docs shows an "Authorize" button for either.
"""

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from db_connect.errors import ApiError

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="BearerKey", description="The API key as `Authorization: Bearer <key>`."
)
header_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKeyHeader", description="The API key as `X-API-Key`."
)

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def api_key_guard(expected: SecretStr) -> Callable[..., None]:
    """Build the dependency that rejects a request unless it carries the expected key."""
    expected_bytes = expected.get_secret_value().encode()

    def require_api_key(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        header_key: Annotated[str | None, Security(header_scheme)],
    ) -> None:
        offered = [key for key in (bearer.credentials if bearer else None, header_key) if key]
        if not offered:
            raise ApiError(
                401,
                "missing_api_key",
                "An API key is required",
                hint="Send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers=CHALLENGE,
            )
        # Bytes, because compare_digest refuses non-ASCII str and a client may send anything.
        if not any(hmac.compare_digest(key.encode(), expected_bytes) for key in offered):
            raise ApiError(401, "invalid_api_key", "The API key is not valid", headers=CHALLENGE)

    return require_api_key
