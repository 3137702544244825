"""Stream records in Redis, so that any worker process can serve any request.

An ended stream is also listed in ENDED_STREAMS; once it is drained and its retention
has passed, the order drainer deletes its Redis state (orders/retention.py) and only SQL
keeps it (`Stream.archived`, served read-only by the API)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from inventory import events
from inventory import keys as inv_keys
from realtime.publish import now_ms

LIVE = "live"
ENDED = "ended"

# Sorted set: id of each ended stream whose Redis state still exists -> ended_at (ms),
# later when retirement had to wait. The retention pass reads the due ones from here
# rather than walking every stream.
ENDED_STREAMS = "live:streams:ended"

# Ends the stream once, atomically with its event. KEYS[1] meta, KEYS[2] events;
# ARGV[1] ended_at, ARGV[2] data of `stream.ended`. A stream whose meta is gone (retired
# meanwhile) is left alone rather than given a partial record.
END_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'ended_at', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'ended')
redis.call('XADD', KEYS[2], '*', 'type', 'stream.ended', 'data', ARGV[2])
return 1
"""


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
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._end = redis.register_script(END_LUA)

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
        # Registered first, then the record and its event in one transaction of the
        # stream's own slot (the registry lives elsewhere on Redis Cluster). A crash in
        # between leaves a listed id without record or events: the drainer and the
        # sweeper find nothing under it, and the API answers 404 for it.
        await self.redis.sadd(inv_keys.STREAMS, stream.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(meta_key(stream.id), mapping=record)
            events.append(pipe, stream.id, "stream.created", stream.to_json())
            await pipe.execute()
        return stream

    async def get(self, sid: str) -> Stream | None:
        h = await self.redis.hgetall(meta_key(sid))
        # A record without its id is a leftover of a write that raced the retirement.
        return Stream.from_hash(h) if h and "id" in h else None

    async def pin(self, sid: str, sku: str) -> None:
        await self.redis.hset(meta_key(sid), "pinned_sku", sku)

    async def end(self, sid: str) -> Stream | None:
        """Mark the stream ended; None if it was ended already (ending is done once)."""
        ended_at = now_ms()
        # HSETNX on ended_at (in the script) makes the transition happen once even when
        # two hosts' requests race.
        data = orjson.dumps({"id": sid, "ended_at": ended_at})
        ended = await self._end(keys=[meta_key(sid), inv_keys.events(sid)], args=[ended_at, data])
        stream = await self.get(sid)
        if stream is not None and stream.ended_at is not None:
            # Registered for retirement after the end itself (another slot in a Cluster):
            # ending again, or the registry walk of orders/retention.py, repairs a
            # registration a crash right here left out; NX keeps the first time.
            await self.redis.zadd(ENDED_STREAMS, {sid: stream.ended_at}, nx=True)
        return stream if ended else None
