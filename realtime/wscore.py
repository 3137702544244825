"""`ServerCore`: the websockets sans-I/O `ServerProtocol` that each `HubProtocol` drives.

A small subclass, checked against websockets 17.4 (pyproject.toml asks for >= 14): on
another version, recheck in websockets/protocol.py and server.py that `recv_frame` still
handles pings, that `Protocol.__init__` still sets `self.id` and that `ServerProtocol`
still calls `self.select_subprotocol(offered)`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from realtime.budget import Budget
from realtime.messages import SUBPROTOCOLS


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
        for name in subprotocols:
            if name in SUBPROTOCOLS:
                return name
        return None

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PING and not self.pings.take():
            self.events.append(frame)  # seen (counts as a sign of life), not answered
            return
        super().recv_frame(frame)
