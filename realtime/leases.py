"""Each viewer's places among its sockets to one stream, over all processes: a socket
holds a lease in Redis (lua/conn_admit.lua) that its process renews while it is open
(lua/conn_renew.lua), so a dead process's places lapse by themselves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from realtime import keys
from realtime.backend import Viewer
from realtime.publish import lua
from realtime.settings import HubSettings

if TYPE_CHECKING:
    from realtime.hub_loops import HubLoops
    from realtime.room import Room
    from realtime.server import HubProtocol

log = logging.getLogger("live.realtime")

LEASE_BATCH = 500  # sockets renewed per script call

Lease = tuple[str, str]  # (key, member): a socket's place among its viewer's sockets


class Leases:
    def __init__(
        self,
        redis: Redis,
        settings: HubSettings,
        process_id: str,
        rooms: dict[str, Room],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        loops: HubLoops,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.process_id = process_id
        self.rooms = rooms  # the hub's own dict: read here, changed by the hub only
        self.spawn = spawn
        self.loops = loops  # runs the renewal; its stop flag and failure logs
        self._conn_admit: AsyncScript = lua("conn_admit.lua", broadcast=False).register(redis)
        self._conn_renew: AsyncScript = lua("conn_renew.lua", broadcast=False).register(redis)
        self._next_conn = 0

    async def take(self, conn: HubProtocol, viewer: Viewer | None) -> bool:
        """A place among the viewer's sockets to this stream, or a 429 and False.

        Only viewer tokens are counted: anonymous sockets carry no identity (and cannot
        like, comment or buy), and a host may watch its own stream from many screens."""
        cap = self.settings.max_connections_per_viewer
        if viewer is None or viewer.role != "viewer" or cap <= 0:
            return True
        key = keys.viewer_connections(conn.sid, viewer.id)
        self._next_conn += 1
        member = f"{self.process_id}:{self._next_conn}"
        lease_ms = int(self.settings.connection_lease_s * 1000)
        if not int(await self._conn_admit(keys=[key], args=[member, lease_ms, cap])):
            conn.reject(
                429,
                f"too many connections: a viewer may hold {cap} sockets to one stream\n",
            )
            return False
        conn.lease = (key, member)
        if conn.closing or conn.transport.is_closing():
            # The client left while we asked Redis; connection_lost has been and gone.
            self.release(conn)
            return False
        return True

    def release(self, conn: HubProtocol) -> None:
        lease, conn.lease = conn.lease, None
        if lease is not None:
            self.spawn(self._zrem(*lease))

    async def _zrem(self, key: str, member: str) -> None:
        try:
            await self.redis.zrem(key, member)
        except Exception:
            log.warning("could not release a connection lease of %s; it lapses", key)

    # --- on stop ---------------------------------------------------------------------

    def detach(self, conns: Iterable[HubProtocol]) -> list[Lease]:
        """Take the leases off these sockets before they close, for `release_all`: their
        connection_lost would spawn tasks that die with the hub."""
        held: list[Lease] = []
        for conn in conns:
            if conn.lease is not None:
                held.append(conn.lease)
                conn.lease = None
        return held

    async def release_all(self, held: list[Lease]) -> None:
        if not held:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, member in held:
                    pipe.zrem(key, member)
                await pipe.execute()
        except Exception:
            log.warning("could not release %d connection leases; they lapse", len(held))

    # --- renewal ---------------------------------------------------------------------

    async def renew_loop(self) -> None:
        """Renew the leases of this process's open sockets well before they lapse."""
        loops = self.loops
        while not loops.stopping:
            await asyncio.sleep(self.settings.connection_lease_s / 3)
            lease_ms = int(self.settings.connection_lease_s * 1000)
            for room in list(self.rooms.values()):
                held = [c.lease for c in room.members if c.lease is not None]
                for i in range(0, len(held), LEASE_BATCH):
                    batch = held[i:i + LEASE_BATCH]
                    try:
                        await self._conn_renew(
                            keys=[key for key, _ in batch],
                            args=[lease_ms, *(member for _, member in batch)],
                        )
                    except Exception as exc:
                        loops.failed("leases", exc)
                    else:
                        loops.succeeded("leases")
