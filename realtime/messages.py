"""Messages on the socket: broadcast messages framed once per subprotocol, per-viewer
messages, and parsing what viewers send."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
from websockets.frames import Frame, Opcode

from domain.errors import DomainError
from rediskit.codec import now_ms  # hub_loops.py and viewer_requests.py import it from here

JSON = "live.json"
MSGPACK = "live.msgpack"
SUBPROTOCOLS = (JSON, MSGPACK)

# Messages a slow viewer may lose; the others are kept (newest per key) until it drains.
DROPPABLE = frozenset({"comment", "comment.deleted", "likes", "viewers", "host.message"})


def text_frame(payload: bytes) -> bytes:
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


def binary_frame(payload: bytes) -> bytes:
    return Frame(Opcode.BINARY, payload).serialize(mask=False)


PING_FRAME = Frame(Opcode.PING, b"hb").serialize(mask=False)


class Message:
    """One broadcast message as it came from Redis; each frame is built at most once."""

    __slots__ = ("_json", "_pack", "obj", "raw", "seq", "type")

    def __init__(self, raw: bytes) -> None:
        obj = orjson.loads(raw)
        self.raw = raw
        self.obj: dict[str, Any] = obj
        self.seq: int = obj["seq"]
        self.type: str = obj["type"]
        self._json: bytes | None = None
        self._pack: bytes | None = None

    def json_frame(self) -> bytes:
        if self._json is None:
            self._json = text_frame(self.raw)
        return self._json

    def pack_frame(self) -> bytes:
        if self._pack is None:
            self._pack = binary_frame(msgpack.packb(self.obj))
        return self._pack

    def frame(self, binary: bool) -> bytes:
        return self.pack_frame() if binary else self.json_frame()

    def slot_key(self) -> str | None:
        """Where a slow viewer keeps this message (newest wins), None if it may be lost."""
        if self.type in DROPPABLE:
            return None
        data = self.obj.get("data")
        if self.type == "stock" and isinstance(data, dict):
            return f"stock:{data.get('sku')}"
        if self.type.startswith("sale.") and isinstance(data, dict):
            return f"sale:{data.get('id') or data.get('sku')}"
        return self.type


def personal(type_: str, data: dict[str, Any], binary: bool, seq: int | None = None) -> bytes:
    """A message for one viewer (`seq` null unless it is a `hello`)."""
    obj = {"type": type_, "seq": seq, "ts": now_ms(), "data": data}
    if binary:
        return binary_frame(msgpack.packb(obj))
    return text_frame(orjson.dumps(obj))


def error_frame(code: str, detail: str, binary: bool) -> bytes:
    return personal("error", {"code": code, "detail": detail}, binary)


def parse_incoming(payload: bytes, binary: bool) -> dict[str, Any]:
    """A viewer's message as an object with a string `type`, or DomainError."""
    try:
        if binary:
            obj = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        else:
            obj = orjson.loads(payload)
    except Exception:
        kind = "msgpack" if binary else "JSON"
        raise DomainError("invalid_message", f"malformed {kind}") from None
    if not isinstance(obj, dict):
        raise DomainError("invalid_message", "a message must be an object")
    if not isinstance(obj.get("type"), str):
        raise DomainError("invalid_message", "missing field: type")
    return obj
