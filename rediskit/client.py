"""The Redis client of every process (service workers, the stand-alone drainer, reconcile):
one server, or a Redis Cluster."""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

# Per node of a Cluster. redis-py's cluster client cannot make a burst wait for a free
# connection as the single-server pool does (it raises MaxConnectionsError), so it gets
# room for the bursts a flash sale brings; idle connections cost the server little.
CLUSTER_CONNECTIONS_PER_NODE = 1000


def redis_client(
    url: str, max_connections: int = 200, decode_responses: bool = True, cluster: bool = False
) -> Any:
    """A pooled client whose callers wait (up to 10 s) for a free connection in a burst,
    instead of failing with "Too many connections". With `cluster`, `url` names any
    node of a Redis Cluster and the client follows the slot map (a `RedisCluster`, which
    offers the same commands, pipelines and scripts for one slot's keys)."""
    if cluster:
        return RedisCluster.from_url(
            url,
            max_connections=max(max_connections, CLUSTER_CONNECTIONS_PER_NODE),
            decode_responses=decode_responses,
            health_check_interval=30,
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=decode_responses,
        health_check_interval=30,
        # One quick reconnect: after a Redis restart a pooled connection is dead until
        # used; without it the first command on each such connection would answer 503.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
    )
    return Redis(connection_pool=pool)
