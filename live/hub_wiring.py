"""Wires the realtime hub to the rest of the service: tokens, stream state, buying."""

from __future__ import annotations

from typing import Any

from domain.errors import DomainError
from live import buying, ws_requests
from live.services import Services
from live.state import stream_state
from live.tokens import TokenError
from realtime.backend import Viewer
from realtime.hub import Hub
from realtime.settings import HubSettings
from rediskit.client import redis_client


class LiveBackend:
    def __init__(self, services: Services) -> None:
        self.services = services

    def verify(self, token: str) -> Viewer:
        try:
            claims = self.services.signer.verify(token)
        except TokenError as exc:
            raise DomainError("unauthorized", str(exc)) from None
        return Viewer(id=claims.subject, name=claims.name, role=claims.role, claims=claims)

    async def hello_state(self, sid: str) -> dict[str, Any] | None:
        stream = await self.services.streams.get(sid)
        if stream is None:
            return None
        return await stream_state(self.services, stream)

    async def buy(self, sid: str, viewer: Viewer, payload: dict[str, Any]) -> dict[str, Any]:
        _, reservation = await buying.buy(self.services, sid, viewer.claims, payload)
        return reservation

    def handles(self, kind: str) -> bool:
        return kind in ws_requests.HANDLERS

    async def request(
        self, sid: str, viewer: Viewer, kind: str, msg: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return await ws_requests.handle(self.services, sid, viewer.claims, kind, msg)


def build_hub(services: Services, redis_url: str, settings: HubSettings) -> Hub:
    # A client of its own without decode_responses: broadcast bytes pass through as is.
    redis = redis_client(
        redis_url, max_connections=100, decode_responses=False,
        cluster=services.settings.redis_cluster,
    )
    return Hub(redis, LiveBackend(services), settings)
