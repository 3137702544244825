"""The one error shape of the HTTP API, `{"error": CODE, "detail": TEXT}`: a raised
DomainError (domain/errors.py) gets the status its code maps to here."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from domain.errors import DomainError
from outage import REDIS, RETRY_AFTER_S, redis_down

log = logging.getLogger("live.http")

# Starlette's own HTTPExceptions (unknown path, wrong method) under our codes.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}

# The one place where an error code becomes an HTTP status; the websocket sends the code
# as is. Every code a DomainError is raised with is listed (tests/test_errors.py).
STATUS: dict[str, int] = {
    # The request itself is malformed.
    "bad_request": 400, "invalid_body": 400, "invalid_json": 400, "invalid_query": 400,
    "invalid_id": 400, "invalid_qty": 400, "invalid_key": 400, "invalid_rates": 400,
    "client_disconnected": 400,
    # Websocket requests only today (realtime/), mapped for any HTTP route that takes
    # them up: a malformed message, a comment refused.
    "invalid_message": 400, "unknown_type": 400, "comment_too_long": 400,
    "comment_rejected": 409,
    "unauthorized": 401,
    "forbidden": 403, "muted": 403,
    # Something it names does not exist.
    "not_found": 404, "unknown_stream": 404, "unknown_sku": 404, "unknown_comment": 404,
    "not_muted": 404, "unknown_group_buy": 404, "unknown_group": 404,
    "unknown_referral": 404,
    # It conflicts with the state of what it names.
    "conflict": 409, "stream_ended": 409, "product_exists": 409, "too_many_products": 409,
    "sold_out": 409, "limit_exceeded": 409, "sale_not_active": 409, "sale_active": 409,
    "idempotency_conflict": 409, "cancelled": 409, "paid": 409, "refunded": 409,
    "group_pending": 409, "group_full": 409, "group_closed": 409, "already_member": 409,
    "referral_refused": 409, "not_paid": 409,
    "expired": 410, "stream_archived": 410,
    "body_too_large": 413,
    "rate_limited": 429,
    # Try again shortly (with Retry-After).
    "unavailable": 503, "stream_recovering": 503, "try_again": 503,
}


def status_of(code: str) -> int:
    # An unlisted code is a bug (the test catches it); a conflict is the least wrong.
    return STATUS.get(code, 409)


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def unavailable(detail: str = "Redis is unreachable; try again shortly") -> DomainError:
    return DomainError("unavailable", detail, retry_after=RETRY_AFTER_S)


async def domain_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    status = status_of(exc.code)
    retry = exc.retry_after if exc.retry_after is not None else (
        RETRY_AFTER_S if status == 503 else None)
    headers = None if retry is None else {"Retry-After": str(retry)}
    return error_response(status, exc.code, exc.detail, headers)


async def client_disconnect_handler(request: Request, exc: Exception) -> Response:
    # The client left while we read its body (or the body timeout dropped it): nobody
    # will read an answer, and it is not a fault of ours worth a traceback.
    log.debug("client left during %s %s", request.method, request.url.path)
    return error_response(400, "client_disconnected", "the client closed the connection")


async def redis_error_handler(request: Request, exc: Exception) -> Response:
    """Redis unreachable (or restarting, or a replica during failover): 503 with
    Retry-After, logged once per outage (outage.REDIS), never a 500. Any other Redis
    error is a bug: the generic handler logs it."""
    if redis_down(exc):
        REDIS.failed(f"{request.method} {request.url.path}", exc)
        return await domain_error_handler(request, unavailable())
    return await unhandled_error_handler(request, exc)


def _allowed_methods(request: Request) -> str:
    """Every method the path takes, over all its routes (one route per method here; the
    405 of the first one would name only its own)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else code
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return JSONResponse(
        {"error": code, "detail": detail}, status_code=exc.status_code, headers=headers
    )


# Path parameters under the names the JSON log uses for them.
_CONTEXT_NAMES = {"sid": "stream", "rid": "reservation", "viewer_id": "viewer",
                  "comment_id": "comment"}


def request_context(request: Request) -> dict[str, str]:
    context = {"method": request.method, "path": request.url.path}
    for name, value in request.path_params.items():
        context[_CONTEXT_NAMES.get(name, name)] = str(value)
    return context


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    # Never a stack trace to the client; the log keeps it.
    log.exception(
        "unhandled error on %s %s", request.method, request.url.path,
        extra=request_context(request),
    )
    return error_response(500, "internal", "internal server error")


EXCEPTION_HANDLERS = {
    DomainError: domain_error_handler,
    ClientDisconnect: client_disconnect_handler,
    HTTPException: http_error_handler,
    RedisError: redis_error_handler,
    Exception: unhandled_error_handler,
}
