"""The one error shape of the HTTP API: `{"error": CODE, "detail": TEXT}`."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from inventory.guard import StreamRecovering
from outage import REDIS, RETRY_AFTER_S, redis_down

log = logging.getLogger("live.http")

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


class ApiError(Exception):
    """Raise anywhere under a route to answer with this status and error code."""

    def __init__(
        self, status: int, code: str, detail: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail or code.replace("_", " ")
        self.headers = headers  # e.g. Retry-After on a 503


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def unavailable(detail: str = "Redis is unreachable; try again shortly") -> ApiError:
    return ApiError(503, "unavailable", detail)


def recovering(sid: str) -> ApiError:
    return ApiError(
        503,
        "stream_recovering",
        f"stream {sid} is being checked against the order store after a Redis restart "
        "or failover; try again shortly",
    )


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = exc.headers
    if headers is None and exc.status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    return error_response(exc.status, exc.code, exc.detail, headers)


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
        e = unavailable()
        return error_response(e.status, e.code, e.detail, {"Retry-After": str(RETRY_AFTER_S)})
    return await unhandled_error_handler(request, exc)


async def recovering_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StreamRecovering)
    return await api_error_handler(request, recovering(exc.sid))


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
    ApiError: api_error_handler,
    ClientDisconnect: client_disconnect_handler,
    HTTPException: http_error_handler,
    RedisError: redis_error_handler,
    StreamRecovering: recovering_handler,
    Exception: unhandled_error_handler,
}
