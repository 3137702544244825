"""What the hub needs from the rest of the service, injected by `live` (the hub never
imports `live`): token checks, the stream state for `hello`, and buying."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Viewer:
    id: str
    name: str
    role: str  # "viewer" or "host"
    claims: Any = None  # the backend's own token claims, handed back to `buy`


class Backend(Protocol):
    def verify(self, token: str) -> Viewer:
        """The token's holder; raises DomainError("unauthorized") for a bad token."""
        ...

    async def hello_state(self, sid: str) -> dict[str, Any] | None:
        """The whole visible state of the stream, or None if there is no such stream."""
        ...

    async def buy(self, sid: str, viewer: Viewer, payload: dict[str, Any]) -> dict[str, Any]:
        """Reserve for this viewer; returns the reservation, raises DomainError."""
        ...

    def handles(self, kind: str) -> bool:
        """Whether `request` answers viewer messages of this type (group buys, ...)."""
        ...

    async def request(
        self, sid: str, viewer: Viewer, kind: str, msg: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Answer a viewer's message: (type, data) of the message to that viewer only;
        raises DomainError, sent as an `error`."""
        ...
