"""The public directory of streams behind `GET /api/streams`: live streams first, then
recently ended ones, each newest first.

Two sorted sets outside any stream's slot (like the registry of streams): live streams by
`created_at`, ended ones by `ended_at`. A page walks them with a keyset cursor
(score, id), so a page costs O(log N + page) however many streams there are. Entries
whose stream record is gone (retired by the drainer) are skipped and dropped lazily.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from inventory.registry import stream_pages
from inventory.streams import meta_key
from realtime import keys as rt_keys
from rediskit.codec import text

LIVE_INDEX = "live:dir:live"  # sid -> created_at (ms)
ENDED_INDEX = "live:dir:ended"  # sid -> ended_at (ms)
ENDED_KEEP = 1000  # ended streams listed at most (the newest)
# Set once the streams that existed before the directory did have been indexed.
BACKFILLED = "live:dir:backfilled"
PUBLIC_FIELDS = ("id", "title", "host_name", "status", "created_at", "ended_at")
_SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PHASES = {"l": LIVE_INDEX, "e": ENDED_INDEX}


class BadCursor(ValueError):
    """A cursor this service did not issue."""


@dataclass(frozen=True, slots=True)
class Cursor:
    phase: str  # "l": still in the live streams, "e": in the ended ones
    score: int
    sid: str


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"dir-cursor:" + payload, hashlib.sha256).digest()[:12]


def encode_cursor(secret: bytes, cur: Cursor) -> str:
    payload = f"{cur.phase}.{cur.score}.{cur.sid}".encode()
    raw = payload + b"." + _mac(secret, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(secret: bytes, text: str) -> Cursor:
    if not text or len(text) > 200:
        raise BadCursor("cursor is not one this service issued")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadCursor("cursor is not one this service issued") from None
    # payload "." mac, the MAC a fixed 12 bytes (it may contain a "." itself).
    payload, mac = raw[:-13], raw[-12:]
    parts = payload.split(b".") if len(raw) > 13 and raw[-13:-12] == b"." else []
    if len(parts) != 3 or not hmac.compare_digest(mac, _mac(secret, payload)):
        raise BadCursor("cursor is not one this service issued")
    phase, score, sid = (p.decode("ascii", "replace") for p in parts)
    if phase not in _PHASES or not score.isdigit() or not _SID.match(sid):
        raise BadCursor("cursor is not one this service issued")
    return Cursor(phase, int(score), sid)


_backfilled = False  # this process has seen the marker


async def backfill(redis: Redis) -> None:
    """Index the streams made before the directory existed (state kept from an older
    version): one walk of the registry per Redis, the first time anyone lists."""
    global _backfilled
    if _backfilled:
        return
    if await redis.exists(BACKFILLED):
        _backfilled = True
        return
    async for sids in stream_pages(redis):
        async with redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hmget(meta_key(sid), ["status", "created_at", "ended_at"])
            rows = await pipe.execute()
        live: dict[str, int] = {}
        done: dict[str, int] = {}
        for sid, (status, created_at, ended_at) in zip(sids, rows, strict=True):
            if text(status) == "live" and created_at:
                live[sid] = int(created_at)
            elif ended_at:
                done[sid] = int(ended_at)
        if live:
            await redis.zadd(LIVE_INDEX, live, nx=True)
        if done:
            await redis.zadd(ENDED_INDEX, done, nx=True)
    await redis.zremrangebyrank(ENDED_INDEX, 0, -ENDED_KEEP - 1)
    # Set after the walk: processes that race here both index, which is harmless.
    await redis.set(BACKFILLED, "1")
    _backfilled = True


async def listed(redis: Redis, sid: str, created_at: int) -> None:
    await redis.zadd(LIVE_INDEX, {sid: created_at})


async def ended(redis: Redis, sid: str, ended_at: int) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(LIVE_INDEX, sid)
        pipe.zadd(ENDED_INDEX, {sid: ended_at})
        # Keep only the newest ENDED_KEEP ended streams listed.
        pipe.zremrangebyrank(ENDED_INDEX, 0, -ENDED_KEEP - 1)
        await pipe.execute()


async def _ids_after(redis: Redis, key: str, after: Cursor | None, count: int) -> list[
    tuple[str, int]
]:
    """Up to `count` (sid, score) of `key` after the cursor, score then id descending."""
    if after is None:
        rows = await redis.zrevrangebyscore(key, "+inf", "-inf", start=0, num=count,
                                            withscores=True)
        return [(text(m), int(s)) for m, s in rows]
    # Ties on the cursor's score (streams made in the same millisecond) first, by id.
    same = await redis.zrangebyscore(key, after.score, after.score)
    ties = sorted((text(m) for m in same if text(m) < after.sid), reverse=True)[:count]
    out = [(sid, after.score) for sid in ties]
    if len(out) < count:
        rows = await redis.zrevrangebyscore(key, f"({after.score}", "-inf", start=0,
                                            num=count - len(out), withscores=True)
        out += [(text(m), int(s)) for m, s in rows]
    return out


async def page(
    redis: Redis, secret: bytes, limit: int, cursor: Cursor | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the directory and the cursor of the next (None at the end)."""
    out: list[dict[str, Any]] = []
    phase = cursor.phase if cursor else "l"
    pos = cursor
    while len(out) < limit:
        want = limit - len(out)
        ids = await _ids_after(redis, _PHASES[phase], pos, want)
        entries = await _records(redis, [sid for sid, _ in ids], phase)
        for (sid, score), entry in zip(ids, entries, strict=True):
            pos = Cursor(phase, score, sid)
            if entry is not None:
                out.append(entry)
        if len(ids) < want:  # this index is exhausted
            if phase == "e":
                return out, None
            phase, pos = "e", None
    assert pos is not None
    return out, encode_cursor(secret, Cursor(phase, pos.score, pos.sid))


async def _records(redis: Redis, sids: list[str], phase: str) -> list[dict[str, Any] | None]:
    if not sids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for sid in sids:
            pipe.hmget(meta_key(sid), list(PUBLIC_FIELDS))
            pipe.hget(rt_keys.stats(sid), "viewers")
        rows = await pipe.execute()
    out: list[dict[str, Any] | None] = []
    gone: list[str] = []
    for i, sid in enumerate(sids):
        row, viewers = rows[2 * i], rows[2 * i + 1]
        vals = [text(v) if v is not None else None for v in row]
        rec = dict(zip(PUBLIC_FIELDS, vals, strict=True))
        expect = "live" if phase == "l" else "ended"
        if rec["id"] is None or rec["status"] != expect:
            # Retired (record gone) or moved on since (ended meanwhile): not listed here.
            if rec["id"] is None:
                gone.append(sid)
            out.append(None)
            continue
        rec["created_at"] = int(rec["created_at"] or 0)
        rec["ended_at"] = int(rec["ended_at"]) if rec["ended_at"] else None
        rec["viewers"] = int(viewers) if viewers else 0
        rec["watch_url"] = f"/s/{sid}"
        out.append(rec)
    if gone:
        await redis.zrem(_PHASES[phase], *gone)
    return out
