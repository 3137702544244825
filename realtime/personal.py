"""Messages for one viewer's open sockets, on whichever processes hold them.

A reservation made, paid or cancelled over HTTP has to reach the buyer's watch page,
which may be connected to any process. Such a message goes out on the stream's own
sharded channel (`rt:{sid}`, SPUBLISH), which every process with viewers of the stream
already subscribes to, so it costs no subscription of its own and works on a Redis
Cluster alike. It starts with MARKER, so the hub tells it from a broadcast with one
prefix check, and writes it only to that viewer's sockets, found through the room's
index by viewer id. It carries `seq: null` and takes no part in the broadcast order,
the history or `resume` (a viewer away at that moment learns of it from the API).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack
import orjson
from redis.asyncio import Redis

from realtime import keys
from realtime.messages import binary_frame, text_frame
from rediskit.codec import now_ms

if TYPE_CHECKING:
    from realtime.room import Room

# orjson keeps key order: every per-viewer payload starts with these bytes, and no
# broadcast does (those start with {"type":).
MARKER = b'{"to-viewer":'


async def send_to_viewer(
    redis: Redis, sid: str, viewer_id: str, type_: str, data: dict[str, Any]
) -> None:
    """Publish `{"type", "seq": null, "ts", "data"}` for every socket of that viewer."""
    msg = {"type": type_, "seq": None, "ts": now_ms(), "data": data}
    payload = orjson.dumps({"to-viewer": viewer_id, "m": msg})
    await redis.spublish(keys.channel(sid), payload)


def deliver(room: Room, raw: bytes) -> None:
    """Write one per-viewer message to that viewer's sockets in this process, if any."""
    obj = orjson.loads(raw)
    conns = room.by_viewer.get(obj.get("to-viewer"))
    if not conns:
        return
    msg = obj["m"]
    frames: dict[bool, bytes] = {}
    for conn in conns:  # a tuple: sends that close a socket do not change it
        frame = frames.get(conn.binary)
        if frame is None:
            frame = frames[conn.binary] = (
                binary_frame(msgpack.packb(msg)) if conn.binary else text_frame(orjson.dumps(msg))
            )
        conn.send(frame)
