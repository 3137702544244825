"""The inventory's Lua scripts: each starts with the shared head `lua/common.lua` and the
group-buy functions of `lua/groups_common.lua` (group holds are reservations, so every
reservation script must know what releasing one does to its group)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.commands.core import AsyncScript

from rediskit.codec import now_ms
from rediskit.lua import Script

LUA_DIR = Path(__file__).parent / "lua"
HEAD = ("common.lua", "groups_common.lua")


def load(name: str) -> Script:
    """`lua/<name>` behind the shared head, loaded once (register it per client)."""
    return Script(LUA_DIR, name, head=HEAD)


async def run(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    """Run an inventory script; it takes this process's clock as its last argument."""
    return await script(keys=keys, args=[*args, now_ms()])
