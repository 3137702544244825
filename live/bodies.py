"""Reading and validating JSON request bodies, with a size limit on everything we read."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from annotated_types import MinLen
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.fields import FieldInfo
from starlette.requests import Request

from domain.errors import DomainError

MAX_BODY_BYTES = 64 * 1024

M = TypeVar("M", bound=BaseModel)


# One character that str.strip() keeps, spelled out: a JSON Schema regex is ECMAScript's,
# whose \s is not Python's (it keeps \x1c-\x1f, which strip() removes).
NON_BLANK = (
    "[^\\x09-\\x0d\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f"
    "\\u205f\\u3000]"
)


def _min_length(field: FieldInfo) -> int:
    return max((m.min_length for m in field.metadata if isinstance(m, MinLen)), default=0)


def _document_non_blank(schema: dict[str, Any]) -> None:
    """A string that must have a length must also have a non-blank character."""
    if schema.get("type") == "string" and schema.get("minLength", 0) >= 1:
        schema.setdefault("pattern", NON_BLANK)
    for sub in (schema.get("items"), *schema.get("anyOf", ()),
                *schema.get("properties", {}).values()):
        if isinstance(sub, dict):
            _document_non_blank(sub)


class Body(BaseModel):
    """Base of request bodies: strict types (no "5" for 5, no 5.5 or true for 5), unknown
    fields ignored so that clients may send more than we read. A number with no fraction
    (5.0, 5e0) is the integer 5, as JSON Schema and the OpenAPI document count it.

    Strings are checked as sent (lengths, patterns: what the OpenAPI document states),
    then stripped; one that must have a length must not be blank."""

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        json_schema_extra=lambda schema, _: _document_non_blank(schema),
    )

    @model_validator(mode="after")
    def _strip_strings(self) -> Body:
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, str):
                if not value.strip() and _min_length(field) >= 1:
                    raise ValueError(f"{name} must not be blank")
                self.__dict__[name] = value.strip()
            elif isinstance(value, list) and any(isinstance(v, str) for v in value):
                items = [v.strip() if isinstance(v, str) else v for v in value]
                if any(item == "" for item in items):
                    raise ValueError(f"{name}: no item may be blank")
                self.__dict__[name] = items
        return self


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise DomainError("body_too_large", f"request body over {limit} bytes")
        except ValueError:
            raise DomainError("bad_request", "invalid Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise DomainError("body_too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise DomainError("invalid_json", "request body must be a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DomainError("invalid_json", f"malformed JSON: {exc}") from None


def validation_detail(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_context=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def parse_model(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise DomainError("invalid_body", "request body must be a JSON object")
    try:
        return model.model_validate({k: _integral(v) for k, v in data.items()})
    except ValidationError as exc:
        raise DomainError("invalid_body", validation_detail(exc)) from None


async def read_body(request: Request, model: type[M]) -> M:
    declared = getattr(request.scope.get("route"), "body_model", model)
    if declared is not model:
        # The OpenAPI document would describe another body than the one checked here.
        raise RuntimeError(f"route declares body {declared!r} but reads {model!r}")
    return parse_model(model, await read_json(request))
