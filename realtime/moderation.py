"""Host moderation of a stream's chat: mutes, banned words, deleted comments. The
comment script reads the same keys, so every process applies them at once."""

from __future__ import annotations

from redis.asyncio import Redis

from realtime import keys
from realtime.publish import Publisher

MAX_BANNED_WORDS = 200


async def mute(redis: Redis, sid: str, viewer_id: str) -> None:
    await redis.sadd(keys.mutes(sid), viewer_id)


async def unmute(redis: Redis, sid: str, viewer_id: str) -> bool:
    return bool(await redis.srem(keys.mutes(sid), viewer_id))


async def muted(redis: Redis, sid: str) -> list[str]:
    return sorted(await redis.smembers(keys.mutes(sid)))


async def set_banned_words(redis: Redis, sid: str, words: list[str]) -> list[str]:
    """Replace the list; words are matched casefolded, anywhere in a comment."""
    clean = sorted({w.strip().casefold() for w in words if w.strip()})
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.banned_words(sid))
        if clean:
            pipe.sadd(keys.banned_words(sid), *clean)
        await pipe.execute()
    return clean


async def banned_words(redis: Redis, sid: str) -> list[str]:
    return sorted(await redis.smembers(keys.banned_words(sid)))


async def delete_comment(publisher: Publisher, sid: str, comment_id: str) -> int:
    """Tell every viewer to hide the comment; returns the message's seq."""
    return await publisher.publish(sid, "comment.deleted", {"id": comment_id})
