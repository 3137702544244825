"""The long-lived objects one service process shares between its requests."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from inventory.catalog import Catalog
from inventory.reservations import Reservations
from inventory.sales import Sales
from live.config import Settings
from live.streams import StreamStore
from live.tokens import TokenSigner
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

    @classmethod
    def build(cls, settings: Settings, redis: Redis, engine: AsyncEngine) -> Services:
        return cls(
            settings=settings,
            redis=redis,
            engine=engine,
            signer=TokenSigner(settings.secret),
            streams=StreamStore(redis),
            catalog=Catalog(redis),
            publisher=Publisher(redis, settings.history_size),
            stock_feed=StockFeed(redis, inv_keys.stock, settings.history_size),
            reservations=Reservations(
                redis,
                settings.reservation_ttl_s,
                # Buys per viewer per second and stream (0: unlimited).
                buys_per_window=settings.buy_rate_per_s,
                batch=True,  # a burst of buyers shares round trips to Redis
            ),
            sales=Sales(redis),
        )
