"""Group buys for HTTP and the websocket alike: open a group, join one, and tell the
viewers what changed (`group.progress` coalesced, `group.formed`, `group.failed`,
`stock`). The decisions are made in Redis (inventory/groups.py); this module checks
the request, maps error codes and announces."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from pydantic import Field

from domain.errors import DomainError
from inventory.group_sweep import GroupSweep
from inventory.groups import GroupError, public_group, stream_of_group
from inventory.reservations import MAX_KEY_LEN, Outcome, ReservationError
from inventory.streams import LIVE
from live.bodies import Body, parse_model
from live.services import Services
from live.tokens import Claims

log = logging.getLogger("live.inventory")

class GroupRequest(Body):
    key: Annotated[str, Field(min_length=1, max_length=MAX_KEY_LEN)]


def answer(group: dict[str, Any], reservation: dict[str, Any]) -> dict[str, Any]:
    """The body of 201 (or 200 for the same key again) after opening or joining."""
    out = public_group(group)
    out["reservation"] = reservation
    out["share_path"] = f"/s/{group['stream_id']}?group={group['share_code']}"
    return out


# --- telling the viewers -------------------------------------------------------------


async def announce_progress(services: Services, sid: str, gids: list[str]) -> None:
    try:
        for gid in dict.fromkeys(gids):
            await services.group_feed.changed(sid, gid)
    except Exception:
        log.exception("group.progress of %s failed", sid)


async def announce_failed(services: Services, sid: str, groups: list[dict[str, Any]]) -> None:
    """Failed groups: `group.failed` each, and the stock their units went back to."""
    try:
        for g in groups:
            await services.publisher.publish(sid, "group.failed", public_group(g))
        for sku in dict.fromkeys(g["sku"] for g in groups):
            await services.stock_feed.changed(sid, sku)
    except Exception:
        log.exception("announcing failed groups of %s failed", sid)


async def announce_formed(services: Services, g: dict[str, Any]) -> None:
    try:
        log.info("group %s of %s formed: %d members paid", g["id"], g["stream_id"], g["paid"])
        await services.publisher.publish(g["stream_id"], "group.formed", public_group(g))
    except Exception:
        log.exception("announcing formed group %s failed", g["id"])


async def after_payment(services: Services, outcome: Outcome) -> None:
    """After a confirm: a group member's payment moves its group's counts (or forms it)."""
    g = outcome.group
    if g is None:
        return
    if g["status"] == "formed":
        await announce_formed(services, g)
    await announce_progress(services, g["stream_id"], [g["id"]])


async def after_settle_error(services: Services, exc: ReservationError) -> None:
    """A confirm that found its group's window over failed the group on the way."""
    if exc.group is not None:
        await announce_failed(services, exc.group["stream_id"], [exc.group])


async def after_release(services: Services, sid: str, outcome: Outcome) -> None:
    """A cancelled group hold reopened its slot."""
    if outcome.groups_changed:
        await announce_progress(services, sid, outcome.groups_changed)


def group_sweep(services: Services) -> GroupSweep:
    async def on_failed(sid: str, groups: list[dict[str, Any]]) -> None:
        await announce_failed(services, sid, groups)

    return GroupSweep(services.redis, services.groups, on_failed)


async def end_groups_of_stream(services: Services, sid: str) -> None:
    """The stream ended: its group buys close and its open groups fail now (refunds)."""
    try:
        await services.groups.close_all(sid)
        await group_sweep(services).fail_stream(sid, everything=True)
    except Exception:
        # The sweeper fails them when their windows end anyway.
        log.exception("ending the group buys of %s failed", sid)


# --- opening and joining ---------------------------------------------------------------


async def _live_stream(services: Services, sid: str) -> None:
    stream = await services.streams.get(sid)
    if stream is None:
        raise DomainError("unknown_stream", f"no stream {sid!r}")
    if stream.status != LIVE:
        raise DomainError("stream_ended", "the stream has ended")


def _viewer(claims: Claims) -> None:
    if claims.role != "viewer":
        raise DomainError("forbidden", "group buys need a viewer token")


async def open_group(
    services: Services, gbid: str, viewer: Claims, body: Any
) -> tuple[int, dict[str, Any]]:
    """Open a group of group buy `gbid` with `viewer` as its first member."""
    _viewer(viewer)
    req = parse_model(GroupRequest, body)
    gb = await services.groups.get_buy(gbid)
    if gb is None:
        raise GroupError("unknown_group_buy")
    await _live_stream(services, gb["stream_id"])
    try:
        joined = await services.groups.open(gbid, viewer.subject, req.key)
    except GroupError as exc:
        raise exc from None
    if joined.created:
        g = joined.group
        log.info("group %s opened in %s by %s", g["id"], g["stream_id"], viewer.subject)
        await services.stock_feed.changed(g["stream_id"], g["sku"])
        await announce_progress(services, g["stream_id"], [g["id"]])
    return (201 if joined.created else 200), answer(joined.group, joined.reservation)


async def join_group(
    services: Services, ref: str, viewer: Claims, body: Any
) -> tuple[int, dict[str, Any]]:
    """Join the group named by its id or share code."""
    _viewer(viewer)
    req = parse_model(GroupRequest, body)
    gid = await services.groups.resolve(ref)
    sid = stream_of_group(gid) if gid else None
    if gid is None or sid is None:
        raise GroupError("unknown_group")
    await _live_stream(services, sid)
    try:
        joined = await services.groups.join(gid, viewer.subject, req.key)
    except GroupError as exc:
        if exc.code == "not_found":  # the script found no such group
            raise GroupError("unknown_group") from None
        if exc.failed is not None:
            await announce_failed(services, sid, [exc.failed])
        raise exc from None
    if joined.created:
        await services.stock_feed.changed(sid, joined.group["sku"])
        await announce_progress(services, sid, [gid])
    return (201 if joined.created else 200), answer(joined.group, joined.reservation)


async def find_group(services: Services, ref: str) -> dict[str, Any]:
    gid = await services.groups.resolve(ref)
    g = await services.groups.get(gid) if gid else None
    if g is None:
        raise GroupError("unknown_group")
    return g
