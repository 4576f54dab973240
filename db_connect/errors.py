"""One JSON error shape for every failure, exactly PostgREST's: code, message, details, hint.

Clients get a stable `code` to branch on and a message naming what to fix; never a stack trace or SQL.
PostgREST clients (postgrest-js, postgrest-py) read these four keys and drop any other. As in PostgREST,
`details` is a string or null, but a list of the candidates when an embedding is ambiguous (PGRST201).
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


class ErrorBody(BaseModel):
    """The body of every error response; documented in OpenAPI so clients can rely on it."""

    code: str
    message: str
    details: str | list[dict[str, str]] | None = None
    hint: str | None = None


class ApiError(Exception):
    """An error meant for the client: raised anywhere, rendered by the handler below."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: str | list[dict[str, str]] | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(code=code, message=message, details=details, hint=hint)
        self.headers = headers


def error_response(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


async def handle_api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.body, exc.headers)


async def handle_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI answers 422 with its own shape; clients get 400 naming the parameter instead."""
    problems = [f"{error['loc'][0]} parameter '{error['loc'][-1]}': {error['msg']}" for error in exc.errors()]
    body = ErrorBody(code="invalid_parameter", message=f"Invalid {problems[0]}", details="; ".join(problems))
    return error_response(400, body)


async def handle_http_exception(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing errors (unknown path, wrong method) get the same shape as ours."""
    body = ErrorBody(code=HTTP_CODES.get(exc.status_code, "http_error"), message=str(exc.detail))
    return error_response(exc.status_code, body, exc.headers)


async def handle_unexpected(_: Request, __: Exception) -> JSONResponse:
    """A bug on our side: the server still logs the traceback; the client learns nothing internal."""
    return error_response(500, ErrorBody(code="internal_error", message="Internal server error"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)
