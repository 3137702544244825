"""Settings of the websocket hub: the `LIVE_WS_*` variables, and `LIVE_HISTORY_SIZE`.

Each field reads the variable `LIVE_WS_` + its name in capitals, unless its
`validation_alias` names another. The service reads the environment once, for all of
its settings (live/config.py), and hands the hub the result: building a `HubSettings`
never reads the environment itself.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# The fastest the PROTOCOL allows these broadcasts.
MIN_LIKES_INTERVAL_MS = 200
MIN_VIEWERS_INTERVAL_MS = 1000


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LIVE_WS_", frozen=True, validate_by_name=True, allow_inf_nan=False
    )

    ping_interval_s: float = Field(20.0, ge=0.05)
    ping_timeout_s: float = Field(20.0, ge=0.05)
    # A viewer whose socket stays unwritable this long is closed with 1008.
    stall_timeout_s: float = Field(10.0, ge=0.05)
    # Bytes queued in the transport above which writing pauses (the slow-consumer mode).
    write_high_water: int = Field(64 * 1024, ge=1024)
    # Past this many queued bytes a connection is closed at once, whatever the timer says.
    write_hard_cap: int = Field(1024 * 1024, ge=4096)
    # The protocol's limit on one incoming frame, not a setting.
    max_frame_bytes: ClassVar[int] = 64 * 1024
    max_comment_chars: int = Field(300, ge=1)
    comments_per_window: int = Field(5, ge=1)
    comment_window_s: float = Field(5.0, ge=0.05)
    # Likes one viewer may send per second, over all its sockets in this process.
    likes_per_second: int = Field(20, ge=1, validation_alias="LIVE_WS_LIKES_PER_S")
    # PROTOCOL: `likes` at most every 200 ms, `viewers` at most once a second.
    likes_interval_ms: int = Field(200, ge=MIN_LIKES_INTERVAL_MS)
    viewers_interval_ms: int = Field(1000, ge=MIN_VIEWERS_INTERVAL_MS)
    # Sockets one viewer token may hold open to one stream, over all processes (0: any).
    max_connections_per_viewer: int = Field(5, ge=0)
    # A process renews its sockets' places every third of this; a dead process's lapse.
    connection_lease_s: float = Field(30.0, ge=1)
    # Broadcast messages kept per stream for `resume` (the publishers keep as many).
    history_size: int = Field(1000, ge=1, validation_alias="LIVE_HISTORY_SIZE")
    # Per socket and minute: `resume` requests (each may re-send the whole history), and
    # pings (ping frames and `ping` messages, each answered by the server). 0: no limit.
    resumes_per_min: int = Field(10, ge=0)
    pings_per_min: int = Field(60, ge=0)
    # After the server sends Close, how long it waits for the peer's Close before it
    # drops the TCP connection (RFC 6455 7.1.1: the peer should see a clean close).
    close_timeout_s: float = Field(3.0, ge=0.05)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the arguments only: live/config.py reads the environment
