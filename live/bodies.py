"""Reading and validating JSON request bodies, with a size limit on everything we read."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request

from live.errors import ApiError

MAX_BODY_BYTES = 64 * 1024

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """Base of request bodies: strict types (no "5" for 5, no 5.0 for 5), unknown
    fields ignored so that clients may send more than we read."""

    model_config = ConfigDict(strict=True, extra="ignore", str_strip_whitespace=True)


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
        except ValueError:
            raise ApiError(400, "bad_request", "invalid Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None


def validation_detail(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_context=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_model(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_body", validation_detail(exc)) from None


async def read_body(request: Request, model: type[M]) -> M:
    return parse_model(model, await read_json(request))
