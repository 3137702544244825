"""Referral bindings for the routes: error codes, and binding a viewer by code."""

from __future__ import annotations

from typing import Any

from inventory.referrals import Binding, ReferralError, stream_of_code
from live.errors import ApiError
from live.services import Services

ERRORS: dict[str, tuple[int, str]] = {
    "unknown_referral": (404, "no such referral code"),
    "referral_refused": (409, "binding to yourself or in a cycle is refused"),
    "invalid_rates": (
        400,
        "level1_bps and level2_bps must each be 0..3000 and together at most 5000",
    ),
    "unknown_stream": (404, "no such stream"),
}


def api_error(exc: ReferralError) -> ApiError:
    status, detail = ERRORS.get(exc.code, (409, exc.code))
    return ApiError(status, exc.code, detail)


def binding_json(viewer_id: str, b: Binding) -> dict[str, Any]:
    return {
        "stream_id": b.stream_id,
        "viewer_id": viewer_id,
        "referrer_id": b.referrer_id,
        "bound": b.bound_now,  # False: an earlier binding was kept (first touch wins)
    }


async def bind(services: Services, viewer_id: str, code: str) -> dict[str, Any]:
    """Bind `viewer_id` by `code`; raises ApiError (404 unknown, 409 refused)."""
    stream_id = stream_of_code(code)
    if stream_id is None or await services.streams.get(stream_id) is None:
        raise api_error(ReferralError("unknown_referral"))
    try:
        return binding_json(viewer_id, await services.referrals.bind(viewer_id, code))
    except ReferralError as exc:
        raise api_error(exc) from None
