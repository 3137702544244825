"""Loading the inventory's Lua scripts, each with the shared head `lua/common.lua`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

LUA_DIR = Path(__file__).parent / "lua"


def source(name: str) -> str:
    return (LUA_DIR / "common.lua").read_text() + (LUA_DIR / name).read_text()


def register(redis: Redis, name: str) -> AsyncScript:
    # redis-py's Script runs EVALSHA and loads the script again after a NOSCRIPT.
    return redis.register_script(source(name))


def text(value: object) -> str:
    """A script reply as str, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def now_ms() -> int:
    return int(time.time() * 1000)


async def run(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    """Run an inventory script; it takes this process's clock as its last argument."""
    return await script(keys=keys, args=[*args, now_ms()])
