"""The long-lived objects one service process shares between its requests."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from inventory.catalog import Catalog
from inventory.groups import Groups
from inventory.guard import Guard
from inventory.referrals import Referrals
from inventory.refunds import Refunds
from inventory.reservations import Reservations
from inventory.sales import Sales
from inventory.streams import StreamStore
from live.config import Settings
from live.recovery import StreamRecovery
from live.tokens import TokenSigner
from orders.group_commit import GroupCommit
from realtime.group_feed import GroupFeed
from realtime.publish import Publisher, StockFeed


@dataclass
class Services:
    settings: Settings
    redis: Redis
    engine: AsyncEngine
    signer: TokenSigner
    streams: StreamStore
    catalog: Catalog
    publisher: Publisher
    stock_feed: StockFeed
    reservations: Reservations
    sales: Sales
    groups: Groups
    group_feed: GroupFeed
    referrals: Referrals
    refunds: Refunds
    recovery: StreamRecovery
    confirms: GroupCommit  # paid rows committed before a confirm answers

    @classmethod
    def build(cls, settings: Settings, redis: Redis, engine: AsyncEngine) -> Services:
        # Every stock change first checks that its stream was rebuilt from SQL on this
        # Redis server (inventory/guard.py); the recovery does that rebuild.
        recovery = StreamRecovery(redis, engine)
        guard = Guard(recovery)
        return cls(
            settings=settings,
            redis=redis,
            engine=engine,
            signer=TokenSigner(settings.secret),
            streams=StreamStore(redis, settings.history_size),
            catalog=Catalog(redis, guard, settings.max_products),
            publisher=Publisher(redis, settings.history_size),
            stock_feed=StockFeed(redis, inv_keys.stock, settings.history_size),
            reservations=Reservations(
                redis,
                settings.reservation_ttl_s,
                # Buys per viewer per second and stream (0: unlimited).
                buys_per_window=settings.buy_rate_per_s,
                batch=True,  # a burst of buyers shares round trips to Redis
                guard=guard,
                settled_retention_s=settings.settled_retention_s,
                check_stream=True,  # unknown or ended streams refused in the same step
            ),
            sales=Sales(redis, guard),
            groups=Groups(redis, settings.reservation_ttl_s, guard),
            group_feed=GroupFeed(redis, inv_keys.groups, settings.history_size),
            referrals=Referrals(redis),
            refunds=Refunds(redis, guard),
            recovery=recovery,
            confirms=GroupCommit(engine),
        )
