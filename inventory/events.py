"""The event stream that carries inventory changes to the order drainer.

One Redis Stream per live stream (`inv:{sid}:events`); each entry has two fields:
`type` (e.g. `product.added`, `reservation.created`) and `data` (a JSON object). Lua
scripts append to it in the same atomic step as the change they record, so an event
exists if and only if its change happened.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio.client import Pipeline

from inventory import keys


def append(pipe: Pipeline, sid: str, type_: str, data: dict[str, Any]) -> None:
    """Queue an XADD of one event on `pipe` (a MULTI pipeline of the caller's)."""
    pipe.xadd(keys.events(sid), {"type": type_, "data": orjson.dumps(data)})
