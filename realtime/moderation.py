"""Host moderation of a stream's chat: mutes, banned words, deleted comments. The
comment script reads the same keys, so every process applies them at once."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from realtime import keys
from realtime.publish import Publisher, lua
from realtime.textnorm import normalize
from rediskit.codec import now_ms

MAX_BANNED_WORDS = 500
MAX_BANNED_WORD_CHARS = 50
DELETE_COMMENT = lua("delete_comment.lua")


async def mute(redis: Redis, sid: str, viewer_id: str) -> None:
    await redis.sadd(keys.mutes(sid), viewer_id)


async def unmute(redis: Redis, sid: str, viewer_id: str) -> bool:
    return bool(await redis.srem(keys.mutes(sid), viewer_id))


async def muted(redis: Redis, sid: str) -> list[str]:
    return sorted(await redis.smembers(keys.mutes(sid)))


async def set_banned_words(redis: Redis, sid: str, words: list[str]) -> list[str]:
    """Replace the list. Words are kept normalized (realtime/textnorm.py) and matched
    anywhere in a comment normalized the same way."""
    clean = sorted({n for n in (normalize(w).strip() for w in words) if n})
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.banned_words(sid))
        if clean:
            pipe.sadd(keys.banned_words(sid), *clean)
        await pipe.execute()
    return clean


async def banned_words(redis: Redis, sid: str) -> list[str]:
    return sorted(await redis.smembers(keys.banned_words(sid)))


async def delete_comment(publisher: Publisher, sid: str, comment_id: str) -> int | None:
    """Tell every viewer to hide the comment; returns the `comment.deleted` seq.

    None when the stream has no record of that comment (never posted here, or older than
    the newest `history_size` comments). Deleting again returns the first seq and
    broadcasts nothing."""
    script = DELETE_COMMENT.register(publisher.redis)
    seq = int(
        await script(
            keys=[
                keys.seq(sid),
                keys.history(sid),
                keys.comment_ids(sid),
                keys.deleted_comments(sid),
            ],
            args=[
                keys.channel(sid), now_ms(), publisher.history_size, comment_id,
                orjson.dumps({"id": comment_id}),
            ],
        )
    )
    return None if seq < 0 else seq
