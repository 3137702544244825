"""The hub's subscriptions to its streams' broadcast channels, on sharded pub/sub.

Broadcasts go out with SPUBLISH (realtime/lua/broadcast.lua) and are received with
SSUBSCRIBE, on one Redis server (Redis >= 7 serves sharded pub/sub without Cluster) or
on each master of a Redis Cluster, where a channel `rt:{sid}` lives in its stream's slot.

One dedicated connection per server ("link"), read only by the link's reader task and
written only under its lock, in call order. `subscribe(sid)` returns once Redis has
confirmed the subscription: the hub takes a viewer's `hello` seq only after that, so
nothing published later can miss this process. (redis-py's PubSub opened one connection
per concurrent first subscribe and kept only the last, so 19 of 20 streams joined at the
same moment on a fresh process heard nothing.)

Every reply on a link answers the oldest command still outstanding there (SSUBSCRIBE,
SUNSUBSCRIBE and PING each get exactly one), so confirmations, errors (a MOVED after a
slot migration) and unsolicited `sunsubscribe` pushes (Redis moved the slot away) are
told apart without guessing. A lost link, or a channel pushed away, is subscribed again
(on whatever server owns the slot now), and `resync(sid)` runs once that is confirmed,
so the room fetches what it missed from the history.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, ResponseError

from realtime import keys

log = logging.getLogger("live.realtime")

SUBSCRIBE_TIMEOUT_S = 5.0
IDLE_PING_S = 15.0  # an idle link is pinged this often; no answer in as long: it is dead
RETRY_MAX_S = 2.0

Deliver = Callable[[str, bytes], None]  # stream id, message as published
Resync = Callable[[str], None]  # stream id whose messages may have been missed


class SubscribeError(Exception):
    """Redis did not confirm a subscription in time."""


def channel_sid(channel: bytes) -> str:
    """The stream id of a channel `rt:{sid}`."""
    return channel.decode()[4:-1]


@dataclass
class _Channel:
    wanted: bool = False
    confirmed: asyncio.Future[None] | None = None  # done once Redis confirmed it
    resync: bool = False  # messages may have been missed: resync once confirmed


@dataclass
class _Link:
    """One server's connection and what it carries."""

    name: str
    make: Callable[[], AbstractConnection]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: AbstractConnection | None = None
    up: bool = False  # connected, and every wanted channel's SSUBSCRIBE sent
    channels: dict[bytes, _Channel] = field(default_factory=dict)
    # Commands awaiting their one reply, oldest first: (command, channel, its future).
    sent: deque[tuple[bytes, bytes, asyncio.Future[None] | None]] = field(
        default_factory=deque
    )
    ping_due: float | None = None
    task: asyncio.Task[None] | None = None
    failures: int = 0


class Subscriptions:
    def __init__(self, redis: Redis | RedisCluster, deliver: Deliver, resync: Resync) -> None:
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        self.deliver = deliver
        self.resync = resync
        self.links: dict[str, _Link] = {}
        self._stopping = False
        self._moves: set[asyncio.Task[None]] = set()

    # --- the hub's calls ---------------------------------------------------------------

    async def start(self) -> None:
        if self.cluster:
            # The slot map, so that each channel's server is known before it is needed.
            await self.redis.initialize()  # type: ignore[union-attr]
            info = await self.redis.info("server", target_nodes=RedisCluster.RANDOM)
        else:
            info = await self.redis.info("server")
        version = str(info.get("redis_version", "0"))  # valkey reports its Redis level
        if int(version.split(".")[0]) < 7:
            raise RuntimeError(
                f"Redis {version} has no sharded pub/sub (SPUBLISH/SSUBSCRIBE): "
                "livecart needs Redis 7.0 or later"
            )

    async def subscribe(self, sid: str) -> None:
        """Subscribed to the stream's channel, confirmed by Redis (else SubscribeError)."""
        channel = keys.channel(sid).encode()
        link = self._link_for(channel)
        if link.failures:
            # Down now: answer the viewer at once (503) rather than after the timeout.
            raise SubscribeError(f"no connection to Redis ({link.name}) for {sid}")
        async with link.lock:
            ch = link.channels.get(channel)
            if ch is None:
                ch = link.channels[channel] = _Channel()
            if not ch.wanted:
                ch.wanted = True
                ch.confirmed = asyncio.get_running_loop().create_future()
                if link.up:
                    await self._send(link, b"SSUBSCRIBE", channel, ch.confirmed)
            confirmed = ch.confirmed
        assert confirmed is not None
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            raise SubscribeError(f"Redis did not confirm the subscription to {sid}") from None

    async def unsubscribe(self, sid: str) -> None:
        channel = keys.channel(sid).encode()
        for link in list(self.links.values()):
            async with link.lock:
                ch = link.channels.get(channel)
                if ch is None or not ch.wanted:
                    continue
                # A join still waiting on it is impossible: the hub unsubscribes a room
                # only when nobody is in it or joining it.
                ch.wanted = False
                ch.confirmed = None
                if link.up:
                    await self._send(link, b"SUNSUBSCRIBE", channel)
                else:
                    del link.channels[channel]

    async def stop(self) -> None:
        self._stopping = True
        tasks = [link.task for link in self.links.values() if link.task is not None]
        tasks += self._moves
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for link in self.links.values():
            if link.conn is not None:
                await link.conn.disconnect(nowait=True)

    # --- links -------------------------------------------------------------------------

    def _link_for(self, channel: bytes) -> _Link:
        if self.cluster:
            assert isinstance(self.redis, RedisCluster)
            node = self.redis.get_node_from_key(channel)
            name, base, cls = node.name, node.connection_kwargs, node.connection_class
        else:
            assert isinstance(self.redis, Redis)
            pool = self.redis.connection_pool
            name, base, cls = "redis", pool.connection_kwargs, pool.connection_class
        link = self.links.get(name)
        if link is None:
            # RESP2, no timeout on the blocking read, no health-check PING of redis-py's
            # own: its reply would be taken for a pub/sub message. The link pings itself.
            kwargs: dict[str, Any] = {**base, "health_check_interval": 0, "socket_timeout": None}
            kwargs["protocol"] = 2
            kwargs["client_name"] = f"live-pubsub-{os.getpid()}"  # for CLIENT LIST / KILL
            link = self.links[name] = _Link(name, lambda: cls(**kwargs))
            link.task = asyncio.create_task(self._run(link), name=f"hub-pubsub-{name}")
        return link

    async def _send(
        self,
        link: _Link,
        command: bytes,
        channel: bytes = b"",
        fut: asyncio.Future[None] | None = None,
    ) -> None:
        """Under the link's lock. A failed write is the reader's business: it sees the
        broken connection and subscribes everything again."""
        assert link.conn is not None
        link.sent.append((command, channel, fut))
        try:
            await link.conn.send_command(command, *((channel,) if channel else ()),
                                         check_health=False)
        except (RedisError, OSError) as exc:
            log.debug("pub/sub write to %s failed: %r", link.name, exc)

    async def _connect(self, link: _Link) -> None:
        conn = link.make()
        await conn.connect()
        async with link.lock:
            link.conn = conn
            link.sent.clear()
            link.ping_due = None
            for channel, ch in list(link.channels.items()):
                if ch.wanted:
                    await self._send(link, b"SSUBSCRIBE", channel, ch.confirmed)
                else:
                    del link.channels[channel]
            link.up = True

    async def _run(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                if not link.up:
                    await self._connect(link)
                    if link.failures:
                        log.info("pub/sub link to %s is back; %d stream(s) subscribed again",
                                 link.name, len(link.channels))
                    link.failures = 0
                assert link.conn is not None
                reply = await link.conn.read_response(disable_decoding=True, timeout=IDLE_PING_S)
                if reply is None:
                    if link.ping_due is not None and loop.time() > link.ping_due:
                        raise ConnectionError("no answer to PING")
                    async with link.lock:
                        await self._send(link, b"PING")
                    link.ping_due = loop.time() + IDLE_PING_S
                    continue
                self._on_reply(link, reply)
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                self._on_error(link, exc)
            except Exception as exc:
                if not await self._lost(link, exc):
                    return

    def _on_reply(self, link: _Link, reply: Any) -> None:
        if not isinstance(reply, list):  # "PONG" of a connection with no subscription
            _pop(link, b"PING")
            link.ping_due = None
            return
        kind = reply[0]
        if kind == b"smessage" or kind == b"message":
            self.deliver(channel_sid(reply[1]), reply[2])
            return
        if kind == b"pong":
            _pop(link, b"PING")
            link.ping_due = None
            return
        channel = reply[1]
        ch = link.channels.get(channel)
        if kind == b"ssubscribe":
            fut = _pop(link, b"SSUBSCRIBE")
            # The future of *this* command: a subscribe, unsubscribe, subscribe in a row
            # is confirmed by the third reply, not the first.
            if ch is not None and ch.wanted and fut is not None and fut is ch.confirmed:
                if not fut.done():
                    fut.set_result(None)
                if ch.resync:  # subscribed again: the link's own log line said so
                    ch.resync = False
                    self.resync(channel_sid(channel))
                else:
                    sid = channel_sid(channel)
                    log.info("subscribed to stream %s", sid, extra={"stream": sid})
        elif kind == b"sunsubscribe":
            if link.sent and link.sent[0][:2] == (b"SUNSUBSCRIBE", channel):
                link.sent.popleft()
                if ch is not None and not ch.wanted:
                    del link.channels[channel]
                    sid = channel_sid(channel)
                    log.info("unsubscribed from stream %s", sid, extra={"stream": sid})
            else:
                # Unsolicited: the slot moved to another server (Cluster resharding).
                self._rehome(link, channel)

    def _on_error(self, link: _Link, exc: ResponseError) -> None:
        command, channel, _ = link.sent.popleft() if link.sent else (b"", b"", None)
        if command == b"SSUBSCRIBE":
            # MOVED/ASK/CLUSTERDOWN: our slot map is stale or the cluster is changing.
            log.warning("subscribing to %r on %s failed (%s); retrying", channel, link.name, exc)
            self._rehome(link, channel, delay=0.2)
        else:
            log.warning("pub/sub %s on %s failed: %s", command.decode() or "reply", link.name, exc)

    def _rehome(self, link: _Link, channel: bytes, delay: float = 0.0) -> None:
        """Subscribe `channel` again wherever its slot lives now, then resync its room."""
        ch = link.channels.pop(channel, None)
        if ch is None or not ch.wanted:
            return
        _unconfirm(ch)
        task = asyncio.get_running_loop().create_task(self._resubscribe(channel, ch, delay))
        self._moves.add(task)
        task.add_done_callback(self._moves.discard)

    async def _resubscribe(self, channel: bytes, ch: _Channel, delay: float) -> None:
        sid = channel_sid(channel)
        await asyncio.sleep(delay)
        if self.cluster:
            try:
                await self.redis.nodes_manager.initialize()  # type: ignore[union-attr]
            except Exception as exc:
                log.warning("refreshing the cluster's slots failed: %r", exc)
        link = self._link_for(channel)
        async with link.lock:
            current = link.channels.get(channel)
            if current is not None and current.wanted and current.confirmed is not None:
                # Subscribed there meanwhile: keep that one, and its confirmation counts.
                current.resync = True
                if ch.confirmed is not None:
                    _chain(current.confirmed, ch.confirmed)
                return
            ch.resync = True
            link.channels[channel] = ch
            if link.up:
                await self._send(link, b"SSUBSCRIBE", channel, ch.confirmed)
        log.debug("stream %s: subscribing again on %s", sid, link.name)

    async def _lost(self, link: _Link, exc: Exception) -> bool:
        """The link's connection failed: every channel on it is subscribed again (on the
        slot's current owner, for a Cluster) and resynced once confirmed. False when the
        link has nothing left to carry and is dropped."""
        if link.failures == 0:
            log.warning("pub/sub link to %s lost (%r); reconnecting", link.name, exc)
        link.failures += 1
        async with link.lock:
            link.up = False
            link.sent.clear()
            if link.conn is not None:
                await link.conn.disconnect(nowait=True)
            for ch in link.channels.values():
                ch.resync = True
                # Joins wait for the new subscription before they take their seq.
                _unconfirm(ch)
        if self.cluster and link.channels:
            try:
                await self.redis.nodes_manager.initialize()  # type: ignore[union-attr]
            except Exception as refresh_exc:
                log.debug("refreshing the cluster's slots failed: %r", refresh_exc)
            for channel in list(link.channels):
                try:
                    owner = self.redis.get_node_from_key(channel)  # type: ignore[union-attr]
                except RedisError:
                    continue  # slot not covered yet: retried on this link
                if owner.name != link.name:
                    self._rehome(link, channel)
        await asyncio.sleep(min(RETRY_MAX_S, 0.05 * 2 ** min(link.failures, 6)))
        if not link.channels and self.links.get(link.name) is link:
            # Nothing left here (a Cluster node that lost its slots, or went away).
            del self.links[link.name]
            return False
        return True


def _pop(link: _Link, command: bytes) -> asyncio.Future[None] | None:
    """The oldest outstanding command, if it is `command`: this reply answers it."""
    if link.sent and link.sent[0][0] == command:
        return link.sent.popleft()[2]
    return None


def _unconfirm(ch: _Channel) -> None:
    """A new pending confirmation for a wanted channel (its old one is kept if pending,
    so that joins already waiting on it are answered)."""
    if ch.wanted and (ch.confirmed is None or ch.confirmed.done()):
        ch.confirmed = asyncio.get_running_loop().create_future()


def _chain(source: asyncio.Future[None], target: asyncio.Future[None]) -> None:
    def copy(_: asyncio.Future[None]) -> None:
        if not target.done():
            target.set_result(None)

    if source.done():
        copy(source)
    else:
        source.add_done_callback(copy)
