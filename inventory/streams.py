"""Stream records in Redis, so that any worker process can serve any request.

They live below `live` (which serves them) because the order drainer's retention and
reconcile read them too, and `orders` never imports `live`.

An ended stream is also listed in ENDED_STREAMS; once it is drained and its retention
has passed, the order drainer deletes its Redis state (orders/retention.py) and only SQL
keeps it (`Stream.archived`, served read-only by the API)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from inventory import keys as inv_keys
from inventory.scripts import LUA_DIR
from realtime import keys as rt_keys
from realtime.publish import LUA_DIR as RT_LUA_DIR
from rediskit.codec import now_ms
from rediskit.lua import Script

LIVE = "live"
ENDED = "ended"

# Sorted set: id of each ended stream whose Redis state still exists -> ended_at (ms),
# later when retirement had to wait. The retention pass reads the due ones from here
# rather than walking every stream.
ENDED_STREAMS = "live:streams:ended"

# The stream record's scripts (inventory/lua/stream_*.lua). Ending one broadcasts
# `stream.ended` in the same step, so it runs behind the realtime hub's `broadcast`
# function (one seq, history and channel).
END = Script(LUA_DIR, "stream_end.lua", head=(RT_LUA_DIR / "broadcast.lua",))
CREATE = Script(LUA_DIR, "stream_create.lua")


def meta_key(sid: str) -> str:
    return f"live:{{{sid}}}:meta"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(slots=True)
class Stream:
    id: str
    title: str
    host_name: str
    status: str
    pinned_sku: str | None
    created_at: int
    ended_at: int | None
    # True when only SQL knows the stream any more (its Redis state was retired).
    archived: bool = False

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Stream:
        return cls(
            id=h["id"],
            title=h["title"],
            host_name=h["host_name"],
            status=h["status"],
            pinned_sku=h.get("pinned_sku") or None,
            created_at=int(h["created_at"]),
            ended_at=int(h["ended_at"]) if h.get("ended_at") else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "host_name": self.host_name,
            "status": self.status,
            "pinned_sku": self.pinned_sku,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
        }
        if self.archived:
            out["archived"] = True
        return out


class StreamStore:
    def __init__(self, redis: Redis, history_size: int = 1000) -> None:
        self.redis = redis
        self.history_size = history_size
        self._end = END.register(redis)
        self._create = CREATE.register(redis)

    async def create(self, title: str, host_name: str) -> Stream:
        stream = Stream(
            id=new_id("s"),
            title=title,
            host_name=host_name,
            status=LIVE,
            pinned_sku=None,
            created_at=now_ms(),
            ended_at=None,
        )
        record = {k: v for k, v in stream.to_json().items() if v is not None}
        # Registered first, then the record and its event in one script of the
        # stream's own slot (the registry lives elsewhere on Redis Cluster). A crash in
        # between leaves a listed id without record or events: the drainer and the
        # sweeper find nothing under it, and the API answers 404 for it.
        await self.redis.sadd(inv_keys.STREAMS, stream.id)
        sid = stream.id
        await self._create(
            keys=[meta_key(sid), inv_keys.events(sid), inv_keys.checked(sid)],
            args=[
                orjson.dumps(stream.to_json()),
                *(part for kv in record.items() for part in kv),
            ],
        )
        return stream

    async def get(self, sid: str) -> Stream | None:
        h = await self.redis.hgetall(meta_key(sid))
        # A record without its id is a leftover of a write that raced the retirement.
        return Stream.from_hash(h) if h and "id" in h else None

    async def pin(self, sid: str, sku: str) -> None:
        await self.redis.hset(meta_key(sid), "pinned_sku", sku)

    async def end(self, sid: str) -> Stream | None:
        """Mark the stream ended and broadcast `stream.ended`, in one atomic step; None if
        it was ended already (ending, and its broadcast, happen once)."""
        ended_at = now_ms()
        # HSETNX on ended_at (in the script) makes the transition happen once even when
        # two hosts' requests race.
        data = orjson.dumps({"id": sid, "ended_at": ended_at})
        ended = await self._end(
            keys=[meta_key(sid), inv_keys.events(sid), rt_keys.seq(sid), rt_keys.history(sid)],
            args=[
                ended_at,
                data,
                rt_keys.channel(sid),
                orjson.dumps({"ended_at": ended_at}),
                self.history_size,
            ],
        )
        stream = await self.get(sid)
        if stream is not None and stream.ended_at is not None:
            # Registered for retirement after the end itself (another slot in a Cluster):
            # ending again, or the registry walk of orders/retention.py, repairs a
            # registration a crash right here left out; NX keeps the first time.
            await self.redis.zadd(ENDED_STREAMS, {sid: stream.ended_at}, nx=True)
        return stream if ended else None
