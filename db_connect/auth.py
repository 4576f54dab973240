"""Who is calling: a credential mapped to the Postgres role the request will run as.

The shared API key (a Docker secret) maps to API_KEY_ROLE; keys created with the CLI map to their own
role; a JWT (HS256) names its role in the `role` claim. Without a credential a request runs as
ANONYMOUS_ROLE, or is refused when there is none. Postgres then decides what the role may do.

A role is accepted only if it is one of the request roles: those granted to the authenticator directly
(`GRANT api_reader TO db_connect`). `set_config('role', ...)` alone would take `none` (the authenticator
itself), `public`, or a group the request roles belong to (reachable through them), as a role.
"""

import hmac
from dataclasses import dataclass

import jwt
import psycopg
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.datastructures import Headers

from db_connect.errors import ApiError
from db_connect.keys import REQUEST_ROLES, KeyStore
from db_connect.settings import Settings

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BearerKey",
    description="An API key or a JWT (HS256, claim `role`) as `Authorization: Bearer <token>`.",
)
header_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKeyHeader", description="An API key as `X-API-Key`."
)

CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    role: str
    anonymous: bool = False


def unauthorized(code: str, message: str, hint: str | None = None) -> ApiError:
    return ApiError(401, code, message, hint=hint, headers=CHALLENGE)


class RequestRoles:
    """The roles granted to the authenticator directly; reloaded with the schema cache, read without locks."""

    def __init__(self) -> None:
        self._names: frozenset[str] = frozenset()

    async def reload(self, conn: psycopg.AsyncConnection) -> None:
        cursor = await conn.execute(REQUEST_ROLES)
        self._names = frozenset(name for (name,) in await cursor.fetchall())

    def __contains__(self, role: str) -> bool:
        return role in self._names


class Authenticator:
    def __init__(self, settings: Settings, keys: KeyStore, roles: RequestRoles) -> None:
        self.shared_key = settings.api_key.get_secret_value().encode()
        self.shared_role = settings.api_key_role
        self.jwt_secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self.anonymous_role = settings.anonymous_role
        self.keys = keys
        self.roles = roles

    def principal(self, headers: Headers) -> Principal:
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        offered = token.strip() if scheme.lower() == "bearer" else ""
        offered = offered or headers.get("x-api-key", "")
        if not offered:
            if self.anonymous_role:
                return Principal(self.anonymous_role, anonymous=True)
            raise unauthorized(
                "missing_api_key",
                "An API key is required",
                hint="Send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            )
        if offered.count(".") == 2 and self.jwt_secret:
            return Principal(self.role_from_jwt(offered))
        # Bytes, because compare_digest refuses non-ASCII str and a client may send anything.
        if hmac.compare_digest(offered.encode(), self.shared_key):
            return Principal(self.shared_role)
        role = self.keys.role_for(offered)
        if role is None:
            raise unauthorized("invalid_api_key", "The API key is not valid")
        return Principal(role)

    def role_from_jwt(self, token: str) -> str:
        assert self.jwt_secret is not None
        try:
            claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"], options={"require": ["role"]})
        except jwt.ExpiredSignatureError:
            raise unauthorized("jwt_expired", "The JWT has expired") from None
        except jwt.InvalidTokenError as exc:
            raise unauthorized("invalid_jwt", f"The JWT is not valid: {exc}") from None
        role = claims["role"]
        if not isinstance(role, str):
            raise role_not_allowed()
        return role

    def assumable(self, principal: Principal) -> Principal:
        """The principal, if its role is a request role; checked once the first schema load has read them."""
        if principal.role not in self.roles:
            raise role_not_allowed()
        return principal


def role_not_allowed() -> ApiError:
    return ApiError(
        403,
        "role_not_allowed",
        "The credential names no role this API may use",
        hint="A request runs as a role granted to the API's login role (GRANT role TO db_connect)",
    )
