"""`ApiRoute`: a route that declares what it takes and answers, for `GET /openapi.json`.

Each route module lists its routes as `ApiRoute`s naming the request body model its
handler validates with (`live/bodies.py` checks the handler reads that very model), the
query model, the response models per status, the errors it may answer and who may call
it. The OpenAPI document is generated from the app's routing table itself
(`live/openapi.py`), so a route cannot exist without being documented, and a model
change shows in the document at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel
from starlette.routing import Route

Auth = Literal["host", "viewer"] | None

# Errors every route may answer, and what they mean in its description.
COMMON_ERRORS: dict[int, str] = {
    500: "internal error (never for client input)",
    503: "unavailable: Redis or SQL cannot be reached now; retry later",
}
# Sign-ups: open mode limits them per client address, admin-key mode needs the key.
SIGNUP_ERRORS: dict[int, str] = {
    401: "unauthorized: LIVE_ADMIN_KEY is set and the request does not carry it",
    429: "rate_limited: too many sign-ups from this address",
}
BODY_ERRORS: dict[int, str] = {
    400: "invalid_json / invalid_body: the detail names the field",
    413: "body_too_large: over 64 KiB",
}
AUTH_ERRORS: dict[int, str] = {
    401: "unauthorized: missing, malformed, forged or expired token",
    403: "forbidden: valid token, wrong stream or role",
}


class ApiRoute(Route):
    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        method: str,
        *,
        summary: str,
        ok: Mapping[int, type[BaseModel] | None],
        errors: Mapping[int, str] | None = None,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        auth: Auth = None,
        description: str = "",
        media_type: str = "application/json",
    ) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method
        self.summary = summary
        self.description = description
        self.ok = dict(ok)
        self.body_model = body  # read_body() insists the handler reads this one
        self.query = query
        self.auth = auth
        self.media_type = media_type  # of the `ok` answers; errors are always JSON
        self.errors: dict[int, str] = dict(COMMON_ERRORS)
        if body is not None:
            self.errors.update(BODY_ERRORS)
        if auth is not None:
            self.errors.update(AUTH_ERRORS)
        self.errors.update(errors or {})
