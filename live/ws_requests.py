"""Viewer messages on the websocket beyond `buy`, answered to that viewer only:

- `group.open {group_buy_id, key}` and `group.join {group, key}` (`group`: id or share
  code) → `group` (the HTTP answer: the group and the member's held reservation);
- `referral.link` → `referral.link {code, url, stream_id}` (url relative to the service);
- `referral.bind {ref}` → `referral.bound` (the binding, as over HTTP);
- `confirm {reservation_id}` (a reservation of this stream) → `reservation` with status
  `paid` (or `group_pending`) once the order is committed in SQL (live/confirming.py).

Errors are `error {code, detail}` with the HTTP codes (group_full, group_closed, ...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from domain.errors import DomainError
from inventory.referrals import stream_of_code
from inventory.reservations import stream_of
from live.confirming import confirm
from live.group_buying import join_group, open_group
from live.referral_binding import bind
from live.services import Services
from live.tokens import Claims

Handler = Callable[[Services, str, Claims, dict[str, Any]], Awaitable[tuple[str, dict[str, Any]]]]


def _str(msg: dict[str, Any], name: str) -> str:
    value = msg.get(name)
    if not isinstance(value, str) or not value:
        raise DomainError("invalid_message", f"{name} must be a non-empty string")
    return value


async def _group_open(
    services: Services, sid: str, viewer: Claims, msg: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    gbid = _str(msg, "group_buy_id")
    gb = await services.groups.get_buy(gbid)
    if gb is None or gb["stream_id"] != sid:
        raise DomainError("unknown_group_buy", "no such group buy in this stream")
    _, out = await open_group(services, gbid, viewer, {"key": msg.get("key")})
    return "group", out


async def _group_join(
    services: Services, sid: str, viewer: Claims, msg: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    _, out = await join_group(services, _str(msg, "group"), viewer, {"key": msg.get("key")})
    return "group", out


async def _referral_link(
    services: Services, sid: str, viewer: Claims, msg: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    code = await services.referrals.link(sid, viewer.subject)
    return "referral.link", {"code": code, "url": f"/s/{sid}?ref={code}", "stream_id": sid}


async def _referral_bind(
    services: Services, sid: str, viewer: Claims, msg: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    code = _str(msg, "ref")
    if stream_of_code(code) != sid:
        raise DomainError("unknown_referral", "no such referral code in this stream")
    return "referral.bound", await bind(services, viewer.subject, code)


async def _confirm(
    services: Services, sid: str, viewer: Claims, msg: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    rid = _str(msg, "reservation_id")
    if stream_of(rid) != sid:  # only a reservation of the stream this socket watches
        raise DomainError("not_found", "no such reservation in this stream")
    return "reservation", await confirm(services, rid, viewer.subject)


HANDLERS: dict[str, Handler] = {
    "confirm": _confirm,
    "group.open": _group_open,
    "group.join": _group_join,
    "referral.link": _referral_link,
    "referral.bind": _referral_bind,
}


async def handle(
    services: Services, sid: str, viewer: Claims, kind: str, msg: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    # A DomainError goes to the viewer as it is (realtime sends its code and detail).
    return await HANDLERS[kind](services, sid, viewer, msg)
