"""Saying once that a dependency is down, and once that it is back.

Shared by every layer of a service process (HTTP handlers, the hub's loops, the sweeper,
the drainer): none of them logs per request or per loop turn while Redis is away.
"""

from outage.failures import FailureLog
from outage.redis import REDIS, RETRY_AFTER_S, Outage, redis_down

__all__ = ["REDIS", "RETRY_AFTER_S", "FailureLog", "Outage", "redis_down"]
