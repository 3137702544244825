"""`ServerCore`: the websockets sans-I/O `ServerProtocol` that each `HubProtocol` drives.

A small subclass, checked against websockets 17.4 (pyproject.toml asks for >= 14): on
another version, recheck in websockets/protocol.py, server.py and streams.py that
`recv_frame` still handles pings, that `Protocol.__init__` still sets `self.id`, that
`ServerProtocol` still calls `self.select_subprotocol(offered)`, and that
`ServerProtocol.parse` still parses the request, then `yield from Protocol.parse()`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.streams import StreamReader
from websockets.typing import Subprotocol

from realtime.budget import Budget
from realtime.messages import SUBPROTOCOLS

_FRAME_LOOP = Protocol.parse.__code__
_AT_EOF = StreamReader.at_eof.__code__


class ServerCore(ServerProtocol):
    """The sans-I/O core, with ping frames over the socket's budget left unanswered:
    each ping costs the server a pong, so a flood of them must not be free.

    Also lighter per socket (an idle viewer is mostly this object): the subprotocol
    choice is a method, not a bound method that `ServerProtocol.__init__` would store in
    every instance, and `id` (a UUID the sans-I/O core never reads; only for logs) is
    made on first use, not for every socket (~100 bytes each).
    """

    def __init__(self, pings: Budget, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        del self.id  # the class's lazy `id` below takes over
        self.pings = pings

    @functools.cached_property
    def id(self) -> uuid.UUID:  # type: ignore[override]
        return uuid.uuid4()

    def select_subprotocol(self, subprotocols: Sequence[Subprotocol]) -> Subprotocol | None:
        # The client's first supported choice; none (or only unknown ones) means live.json.
        # Our own constant, not the parsed header's string: the socket keeps it.
        for name in subprotocols:
            for ours in SUBPROTOCOLS:
                if name == ours:
                    return Subprotocol(ours)
        return None

    def drop_handshake_parser(self) -> bool:
        """Once the request is parsed: parse frames with a generator of their own.

        `ServerProtocol.parse` parses the request, then runs the frame loop inside the
        same generator, whose frame keeps the request (~2.7 KB of headers) and itself
        (~0.3 KB) for the socket's life. A fresh `Protocol.parse` is the same loop;
        swapped only while the old one waits between frames with nothing buffered
        (always, unless the client sent frame bytes before our 101), so nothing read
        is lost. False if it was not the time (then nothing changed)."""
        loop = getattr(self.parser, "gi_yieldfrom", None)
        waiting = getattr(loop, "gi_yieldfrom", None)
        if (
            getattr(loop, "gi_code", None) is not _FRAME_LOOP
            or getattr(waiting, "gi_code", None) is not _AT_EOF
            or self.reader.buffer
        ):
            return False
        self.parser = Protocol.parse(self)
        next(self.parser)  # start coroutine, as Protocol.__init__ does
        return True

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PING and not self.pings.take():
            self.events.append(frame)  # seen (counts as a sign of life), not answered
            return
        super().recv_frame(frame)
