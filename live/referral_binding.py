"""Referral bindings for the routes: binding a viewer by code."""

from __future__ import annotations

from typing import Any

from inventory.referrals import Binding, ReferralError, stream_of_code
from live.services import Services


def binding_json(viewer_id: str, b: Binding) -> dict[str, Any]:
    return {
        "stream_id": b.stream_id,
        "viewer_id": viewer_id,
        "referrer_id": b.referrer_id,
        "bound": b.bound_now,  # False: an earlier binding was kept (first touch wins)
    }


async def bind(services: Services, viewer_id: str, code: str) -> dict[str, Any]:
    """Bind `viewer_id` by `code`; raises ReferralError (unknown_referral, referral_refused)."""
    stream_id = stream_of_code(code)
    if stream_id is None or await services.streams.get(stream_id) is None:
        raise ReferralError("unknown_referral")
    try:
        return binding_json(viewer_id, await services.referrals.bind(viewer_id, code))
    except ReferralError as exc:
        raise exc from None
