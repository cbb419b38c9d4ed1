"""RFC 9457 problem details: one exception type inside, one JSON shape outside.

Routes raise :class:`Problem` (or a domain exception the service maps to one); the handlers
installed by :func:`install` turn it, FastAPI's validation errors and anything unexpected into
``application/problem+json`` with a stable machine ``code``. Never a stack trace.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error the client can act on."""

    def __init__(
        self, status: int, code: str, detail: str, *, field: str | None = None, title: str = ""
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.title = title or code.replace("_", " ").capitalize()


class ProblemDetails(BaseModel):
    """The body of every error response (RFC 9457 problem details plus our ``code``)."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    field: str | None = None
    instance: str | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the problem responses a route can give, for ``responses=``.

    Declaring 422 also stops FastAPI from documenting its own validation error shape, which
    these handlers never send.
    """
    schema = ProblemDetails.model_json_schema()
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"about:blank#{problem.code}",
        "title": problem.title,
        "status": problem.status,
        "code": problem.code,
        "detail": problem.detail,
    }
    if problem.field is not None:
        body["field"] = problem.field
    if instance is not None:
        body["instance"] = instance
    readable = {k: _encodable(v) if isinstance(v, str) else v for k, v in body.items()}
    return JSONResponse(readable, status_code=problem.status, media_type=PROBLEM_JSON)


def _encodable(text: str) -> str:
    """A detail may quote input (a field name): one that UTF-8 cannot encode must not turn the
    client's mistake into our 500."""
    return text.encode("utf-8", "replace").decode("utf-8")


def refusal(where: str, why: str) -> JSONResponse:
    """The answer to input :class:`shared.http.InputGuard` refuses: a 400 problem naming where."""
    problem = Problem(400, "INVALID_CHARACTERS", f"{where}: {why}", field=where)
    return problem_response(problem)


def _field_of(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    return ".".join(location) or "body"


def validation_problem(exc: RequestValidationError) -> Problem:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        # Its location is ("body", <character offset>): no field of the body is at fault.
        detail = f"body: not valid JSON at character {first.get('loc', ('', '?'))[-1]}"
        return Problem(422, "VALIDATION_FAILED", detail, field="body", title="Invalid request")
    field = _field_of(first)
    detail = f"{field}: {first.get('msg', 'invalid value')}"
    return Problem(422, "VALIDATION_FAILED", detail, field=field, title="Invalid request")


_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def install(app: FastAPI) -> None:
    """Make every error of ``app`` a problem+json response."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(exc), request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else code
        return problem_response(Problem(exc.status_code, code, detail), request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        problem = Problem(500, "INTERNAL_ERROR", "Something went wrong on our side.")
        return problem_response(problem, request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
