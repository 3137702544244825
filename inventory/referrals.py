"""Referral links and bindings of a stream (分销), and its commission rates.

A viewer's code names its stream (`<stream hex><random hex>`), so a code alone finds the
stream's keys. Binding is first touch, for good, and never closes a cycle: decided in
one Lua script in the stream's slot (lua/referral_bind.lua). The rates in force and the
buyer's referrer chain are copied onto each order when it is paid (lua/common.lua
`referral_snapshot`), so its events carry everything the commission ledger needs.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from domain.errors import DomainError
from inventory import keys
from inventory.scripts import load, run
from rediskit.codec import text

REFERRAL_LINK = load("referral_link.lua")
REFERRAL_BIND = load("referral_bind.lua")
COMMISSION = load("commission.lua")

MAX_LEVEL_BPS = 3000
MAX_TOTAL_BPS = 5000

_STREAM_ID = re.compile(r"^s_([0-9a-f]{16})$")
_CODE = re.compile(r"^([0-9a-f]{16})[0-9a-f]{8}$")


class ReferralError(DomainError):
    details = {
        "unknown_referral": "no such referral code",
        "referral_refused": "binding to yourself or in a cycle is refused",
        "unknown_stream": "no such stream",
        "invalid_rates":
            "level1_bps and level2_bps must each be 0..3000 and together at most 5000",
    }


@dataclass
class Binding:
    stream_id: str
    referrer_id: str
    bound_now: bool  # False: the viewer was bound earlier (first touch kept)


def stream_of_code(code: str) -> str | None:
    m = _CODE.match(code)
    return f"s_{m.group(1)}" if m else None


class Referrals:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._link = REFERRAL_LINK.register(redis)
        self._bind = REFERRAL_BIND.register(redis)
        self._rates = COMMISSION.register(redis)

    def _keys(self, sid: str) -> list[str]:
        return [*keys.script_keys(sid), keys.referral_codes(sid)]

    async def link(self, sid: str, viewer_id: str) -> str:
        """The viewer's code in this stream (the same one every time)."""
        m = _STREAM_ID.match(sid)
        if m is None:
            raise ReferralError("unknown_stream")
        for _ in range(10):
            fresh = f"{m.group(1)}{secrets.token_hex(4)}"
            outcome, code = await run(self._link, keys=self._keys(sid), args=[viewer_id, fresh])
            if text(outcome) != "taken":
                return text(code)
        raise RuntimeError("no free referral code after 10 tries")

    async def bind(self, viewer_id: str, code: str) -> Binding:
        sid = stream_of_code(code)
        if sid is None:
            raise ReferralError("unknown_referral")
        outcome, referrer = await run(self._bind, keys=self._keys(sid), args=[viewer_id, code, sid])
        outcome = text(outcome)
        if outcome in ("bound_now", "bound"):
            return Binding(sid, text(referrer), bound_now=outcome == "bound_now")
        raise ReferralError(outcome)

    async def referrer_of(self, sid: str, viewer_id: str) -> str | None:
        raw = await self.redis.hget(keys.referrals(sid), viewer_id)
        return text(raw) if raw else None

    async def set_rates(self, sid: str, level1_bps: int, level2_bps: int) -> dict[str, Any]:
        if not (0 <= level1_bps <= MAX_LEVEL_BPS and 0 <= level2_bps <= MAX_LEVEL_BPS):
            raise ReferralError("invalid_rates")
        if level1_bps + level2_bps > MAX_TOTAL_BPS:
            raise ReferralError("invalid_rates")
        raw = await run(self._rates, keys=keys.script_keys(sid), args=[level1_bps, level2_bps, sid])
        return orjson.loads(text(raw))

    async def rates(self, sid: str) -> dict[str, int]:
        l1, l2 = await self.redis.hmget(keys.commission(sid), ["level1_bps", "level2_bps"])
        return {"level1_bps": int(l1 or 0), "level2_bps": int(l2 or 0)}
