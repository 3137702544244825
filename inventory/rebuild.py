"""Running lua/rebuild.lua: a stream's stock rebuilt from the order store's rows."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from inventory import keys
from inventory.scripts import LUA_DIR, load, run
from rediskit.codec import text
from rediskit.lua import Script

REBUILD = load("rebuild.lua")
# Needs none of the shared head: one GET and the server's own run_id.
CHECKED_HERE = Script(LUA_DIR, "checked_here.lua")


async def checked_here(redis: Redis, sid: str) -> bool:
    """True when `sid` was checked against the order store on the server holding it
    (asked of that server: lua/checked_here.lua)."""
    return bool(await CHECKED_HERE.register(redis)(keys=[keys.checked(sid)]))


class Rebuilder:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = REBUILD.register(redis)

    async def run(
        self,
        sid: str,
        rows: list[dict[str, Any]],
        products: list[dict[str, Any]],
        force: bool = False,
    ) -> dict[str, Any]:
        """Merge `rows` (SQL reservations Redis lacks or holds otherwise) and `products`
        (SQL products Redis lacks) into the stream and recompute its stock, counts and
        expiry set; returns what changed (`{"fresh": true}`: checked already, nothing
        done). Registers the stream with the sweepers when holds are open."""
        payload = orjson.dumps({"rows": rows, "products": products}).decode()
        report = orjson.loads(
            text(
                await run(
                    self._script,
                    keys=keys.script_keys(sid),
                    args=[payload, "1" if force else "0"],
                )
            )
        )
        next_due = report.get("next_due")
        if next_due:
            await self.redis.zadd(keys.SWEEP_RESERVATIONS, {sid: int(next_due)}, lt=True)
        # cjson encodes an empty list as {}.
        return {k: ([] if v == {} else v) for k, v in report.items()}
