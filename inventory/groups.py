"""Group buys (拼团): a host offers a sku at a group price; viewers open groups and
invite others with a share code; a group forms when `group_size` members have paid
within its window, or fails when the window ends first.

Every change is one Lua script on the stream's keys (lua/group_*.lua, with the shared
functions of lua/groups_common.lua), so membership, holds, stock and the group's status
move together: a group never has more than `group_size` members, and it is formed or
failed exactly once. A member's hold is an ordinary reservation (qty 1, at the group
price, tagged with `group_id`), so confirm, cancel and expiry work on it as on any other
and tell its group. Windows run out through the sweeper (`GroupSweep`,
inventory/group_sweep.py), like reservation expiry: a global sorted set of streams by
their earliest window end, polled by every process, plus a periodic full walk of the
registry.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from domain.errors import DomainError
from inventory import keys
from inventory.guard import Guard
from inventory.reservations import new_reservation_id
from inventory.scripts import load, run
from rediskit.codec import text

GROUP_BUY = load("group_buy.lua")
GROUP_BUY_CLOSE = load("group_buy_close.lua")
GROUP_OPEN = load("group_open.lua")
GROUP_JOIN = load("group_join.lua")
GROUP_FAIL = load("group_fail.lua")

MIN_SIZE, MAX_SIZE = 2, 50
MIN_WINDOW_S, MAX_WINDOW_S = 10, 86_400
FAIL_BATCH = 100
# A share code keeps finding its group this long after the window (for status reads).
CODE_GRACE_S = 7 * 24 * 3600
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud in a stream
CODE_LEN = 8

_STREAM_ID = re.compile(r"^s_([0-9a-f]{16})$")
_GROUP_ID = re.compile(r"^g_([0-9a-f]{16})[0-9a-f]{16}$")
_GROUP_BUY_ID = re.compile(r"^gb_([0-9a-f]{16})[0-9a-f]{16}$")
_CODE = re.compile(rf"^[{CODE_ALPHABET}]{{{CODE_LEN}}}$")


class GroupError(DomainError):
    """A group-buy request failed; `code` is the protocol's error code."""

    details = {
        "unknown_group_buy": "no such group buy",
        "not_found": "no such group",
        "unknown_group": "no group with this id or share code",
        "group_full": "the group has all its members",
        "group_closed": "the group (or its group buy) is not open any more",
        "already_member": "you are in this group already",
        "sold_out": "not enough stock left",
        "limit_exceeded": "over the per-viewer limit for this item",
        "idempotency_conflict": "this key was used for another request",
        "unknown_sku": "no such product in this stream",
    }

    def __init__(
        self,
        code: str,
        reservation: dict[str, Any] | None = None,
        failed: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code)
        self.reservation = reservation
        self.failed = failed  # a group found past its window and failed on the way


@dataclass
class Joined:
    group: dict[str, Any]
    reservation: dict[str, Any]
    created: bool  # False: the same idempotency key again


@dataclass
class Failed:
    groups: list[dict[str, Any]] = field(default_factory=list)
    next_due: int | None = None


def _hex_of(sid: str) -> str:
    m = _STREAM_ID.match(sid)
    if m is None:
        raise ValueError(f"not a stream id: {sid!r}")
    return m.group(1)


def new_group_buy_id(sid: str) -> str:
    return f"gb_{_hex_of(sid)}{secrets.token_hex(8)}"


def new_group_id(sid: str) -> str:
    return f"g_{_hex_of(sid)}{secrets.token_hex(8)}"


def new_share_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LEN))


def stream_of_group(gid: str) -> str | None:
    m = _GROUP_ID.match(gid)
    return f"s_{m.group(1)}" if m else None


def stream_of_group_buy(gbid: str) -> str | None:
    m = _GROUP_BUY_ID.match(gbid)
    return f"s_{m.group(1)}" if m else None


def _json(raw: object) -> Any:
    s = text(raw) if raw is not None else ""
    return orjson.loads(s) if s else None


def public_group(g: dict[str, Any]) -> dict[str, Any]:
    """The group as the API shows it (the roster stays inside)."""
    return {
        "group_id": g["id"],
        "group_buy_id": g["group_buy_id"],
        "stream_id": g["stream_id"],
        "sku": g["sku"],
        "share_code": g["share_code"],
        "group_size": g["group_size"],
        "price_cents": g["price_cents"],
        "members": g["members"],
        "paid": g["paid"],
        "needed": g["needed"],
        "opened_at": g["opened_at"],
        "expires_at": g["expires_at"],
        "status": g["status"],
        "formed_at": g.get("formed_at"),
        "failed_at": g.get("failed_at"),
    }


def progress(g: dict[str, Any]) -> dict[str, Any]:
    """Data of a `group.progress` message."""
    return {
        "group_id": g["id"],
        "group_buy_id": g["group_buy_id"],
        "sku": g["sku"],
        "members": g["members"],
        "paid": g["paid"],
        "needed": g["needed"],
        "status": g["status"],
        "expires_at": g["expires_at"],
    }


class Groups:
    def __init__(self, redis: Redis, ttl_s: float, guard: Guard | None = None) -> None:
        self.redis = redis
        self.guard = guard or Guard()  # every group script changes stock or holds
        self.ttl_ms = int(ttl_s * 1000)
        self._create = GROUP_BUY.register(redis)
        self._close = GROUP_BUY_CLOSE.register(redis)
        self._open = GROUP_OPEN.register(redis)
        self._join = GROUP_JOIN.register(redis)
        self._fail = GROUP_FAIL.register(redis)

    async def _run(self, sid: str, script: Any, args: list[Any]) -> Any:
        return await self.guard(sid, lambda: run(script, keys=keys.script_keys(sid), args=args))

    # --- group buys (the host's offers) ----------------------------------------------

    async def create_buy(
        self,
        sid: str,
        sku: str,
        group_price_cents: int,
        group_size: int,
        window_s: int,
        stock: int | None,
    ) -> dict[str, Any]:
        outcome, raw = await self._run(
            sid,
            self._create,
            [
                sku,
                new_group_buy_id(sid),
                group_price_cents,
                group_size,
                window_s,
                "" if stock is None else stock,
                sid,
            ],
        )
        if text(outcome) != "created":
            raise GroupError(text(outcome))
        return _json(raw)

    async def close_buy(self, gbid: str) -> tuple[dict[str, Any], bool]:
        """Close a group buy; (it, True when this call closed it)."""
        sid = stream_of_group_buy(gbid)
        if sid is None:
            raise GroupError("not_found")
        outcome, raw = await self._run(sid, self._close, [gbid])
        if text(outcome) == "not_found":
            raise GroupError("not_found")
        return _json(raw), text(outcome) == "closed_now"

    async def get_buy(self, gbid: str) -> dict[str, Any] | None:
        sid = stream_of_group_buy(gbid)
        if sid is None:
            return None
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.group_buys(sid), [gbid, f"{gbid}:opened", f"{gbid}:used"])
            ((raw, opened, used),) = await pipe.execute()
        gb = _json(raw)
        if gb is not None:
            gb["groups_opened"] = int(opened or 0)
            gb["units_held"] = int(used or 0)
        return gb

    async def list_buys(self, sid: str) -> list[dict[str, Any]]:
        """The stream's group buys, newest first, with their counters."""
        h = {text(k): text(v) for k, v in (await self.redis.hgetall(keys.group_buys(sid))).items()}
        out = []
        for k, v in h.items():
            if ":" in k:
                continue
            gb = orjson.loads(v)
            gb["groups_opened"] = int(h.get(f"{k}:opened", 0))
            gb["units_held"] = int(h.get(f"{k}:used", 0))
            out.append(gb)
        out.sort(key=lambda gb: (-gb["created_at"], gb["id"]))
        return out

    async def close_all(self, sid: str) -> list[dict[str, Any]]:
        """Close every active group buy of the stream (it ended)."""
        closed = []
        for gb in await self.list_buys(sid):
            if gb["status"] == "active":
                buy, now = await self.close_buy(gb["id"])
                if now:
                    closed.append(buy)
        return closed

    # --- groups (the viewers') -------------------------------------------------------

    async def open(self, gbid: str, viewer_id: str, key: str) -> Joined:
        sid = stream_of_group_buy(gbid)
        if sid is None:
            raise GroupError("unknown_group_buy")
        gid = new_group_id(sid)
        code = await self._claim_code(gid)
        try:
            outcome, graw, rraw, first = await self._run(
                sid,
                self._open,
                [gbid, viewer_id, key, gid, code, new_reservation_id(sid), self.ttl_ms],
            )
        except BaseException:
            await self.redis.delete(keys.group_code(code))
            raise
        outcome = text(outcome)
        if outcome != "created":
            # The code was never used: free it (the group was not opened).
            await self.redis.delete(keys.group_code(code))
        if outcome in ("created", "existing"):
            r = _json(rraw)
            if int(first):
                await self.redis.zadd(keys.SWEEP_RESERVATIONS, {sid: r["expires_at"]}, lt=True)
            g = _json(graw)
            if outcome == "created":
                await self.redis.zadd(keys.SWEEP_GROUPS, {sid: g["expires_at"]}, lt=True)
            return Joined(g, r, created=outcome == "created")
        raise GroupError(outcome, _json(rraw))

    async def _claim_code(self, gid: str) -> str:
        """A fresh share code pointing at `gid` (written before the group exists: a
        crash in between leaves a code that finds no group, never a group without one)."""
        for _ in range(10):
            code = new_share_code()
            if await self.redis.set(
                keys.group_code(code), gid, nx=True, ex=MAX_WINDOW_S + CODE_GRACE_S
            ):
                return code
        raise RuntimeError("no free share code after 10 tries")

    async def resolve(self, ref: str) -> str | None:
        """A group id from a group id or a share code (case-insensitive)."""
        if stream_of_group(ref) is not None:
            return ref
        code = ref.strip().upper()
        if not _CODE.match(code):
            return None
        gid = await self.redis.get(keys.group_code(code))
        return text(gid) if gid else None

    async def join(self, gid: str, viewer_id: str, key: str) -> Joined:
        sid = stream_of_group(gid)
        if sid is None:
            raise GroupError("not_found")
        outcome, graw, rraw, first, failed = await self._run(
            sid,
            self._join,
            [gid, viewer_id, key, new_reservation_id(sid), self.ttl_ms],
        )
        outcome = text(outcome)
        if outcome in ("created", "existing"):
            r = _json(rraw)
            if int(first):
                await self.redis.zadd(keys.SWEEP_RESERVATIONS, {sid: r["expires_at"]}, lt=True)
            return Joined(_json(graw), r, created=outcome == "created")
        raise GroupError(outcome, _json(rraw), failed=_json(failed))

    async def get(self, gid: str) -> dict[str, Any] | None:
        sid = stream_of_group(gid)
        if sid is None:
            return None
        return _json(await self.redis.hget(keys.groups(sid), gid))

    async def fail_due(self, sid: str, everything: bool = False) -> Failed:
        """Fail the stream's groups whose window ended (all open ones: `everything`)."""
        out = Failed()
        while True:
            raw, next_due = await self._run(
                sid,
                self._fail,
                [FAIL_BATCH, "1" if everything else "0"],
            )
            batch = _json(raw) or []
            out.groups.extend(batch)
            nd = text(next_due)
            out.next_due = int(float(nd)) if nd else None
            if len(batch) < FAIL_BATCH:
                return out

