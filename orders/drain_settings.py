"""Settings of the order drainer: the `LIVE_DRAIN_*` variables, and retention.

Each field reads the variable `LIVE_DRAIN_` + its name in capitals, unless its
`validation_alias` names another. The service reads the environment once, for all of
its settings (live/config.py), and hands the drainer the result: building a
`DrainSettings` never takes a value from the environment itself.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

GROUP = "orders"


class DrainSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LIVE_DRAIN_", frozen=True, validate_by_name=True, allow_inf_nan=False
    )

    # entries per SQL transaction at most
    batch_size: int = Field(500, ge=1, validation_alias="LIVE_DRAIN_BATCH")
    block_ms: int = Field(500, ge=1)  # how long one XREADGROUP waits for new entries
    # a pending entry idle this long belongs to a dead drainer
    claim_idle_ms: int = Field(30_000, ge=100)
    refresh_ms: int = Field(1_000, ge=10)  # how often the list of streams is re-read
    # longest back-off between retries (SQL refused, loop restart)
    retry_max_ms: int = Field(5_000, ge=10)
    max_lag: int = Field(1_000_000, ge=1)  # above this many waiting events /healthz says "behind"
    # another group name gives an independent copy of the order store
    group: str = GROUP
    # drain only these stream ids (sharding), comma-separated; empty: all
    only: Annotated[frozenset[str], NoDecode] = frozenset()
    # `live drain` serves its own /metrics on this port; 0: none
    metrics_port: int = Field(0, ge=0, le=65535)
    # acknowledged events are kept this long
    events_retention_s: int = Field(24 * 3600, ge=0, validation_alias="LIVE_EVENTS_RETENTION_S")
    # an ended, drained stream's Redis state too
    stream_retention_s: int = Field(
        7 * 24 * 3600, ge=0, validation_alias="LIVE_STREAM_RETENTION_S"
    )
    # trim a stream / look for streams to retire
    retention_interval_ms: int = Field(5_000, ge=10, validation_alias="LIVE_RETENTION_INTERVAL_MS")

    @field_validator("group", mode="before")
    @classmethod
    def _group(cls, value: Any) -> Any:
        return (value.strip() or GROUP) if isinstance(value, str) else value

    @field_validator("only", mode="before")
    @classmethod
    def _only(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(s.strip() for s in value.split(",") if s.strip())
        return value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the arguments only: live/config.py reads the environment


def consumer_name() -> str:
    """Unique per process and per start, so a restarted drainer never inherits the
    pending entries of its previous life except through XAUTOCLAIM."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
