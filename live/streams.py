"""Stream records in Redis, so that any worker process can serve any request."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from inventory import events
from inventory import keys as inv_keys
from realtime.publish import now_ms

LIVE = "live"
ENDED = "ended"


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
        return {
            "id": self.id,
            "title": self.title,
            "host_name": self.host_name,
            "status": self.status,
            "pinned_sku": self.pinned_sku,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
        }


class StreamStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

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
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(meta_key(stream.id), mapping=record)
            pipe.sadd(inv_keys.STREAMS, stream.id)
            events.append(pipe, stream.id, "stream.created", stream.to_json())
            await pipe.execute()
        return stream

    async def get(self, sid: str) -> Stream | None:
        h = await self.redis.hgetall(meta_key(sid))
        return Stream.from_hash(h) if h else None

    async def pin(self, sid: str, sku: str) -> None:
        await self.redis.hset(meta_key(sid), "pinned_sku", sku)

    async def end(self, sid: str) -> Stream | None:
        """Mark the stream ended; None if it was ended already (ending is done once)."""
        ended_at = now_ms()
        # HSETNX on ended_at makes the transition happen once even when two hosts'
        # requests race.
        if not await self.redis.hsetnx(meta_key(sid), "ended_at", ended_at):
            return None
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(meta_key(sid), "status", ENDED)
            events.append(pipe, sid, "stream.ended", {"id": sid, "ended_at": ended_at})
            await pipe.execute()
        return await self.get(sid)
