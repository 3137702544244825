"""Settings of the websocket hub, read from the environment (`LIVE_WS_*`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

# The fastest the PROTOCOL allows these broadcasts.
MIN_LIKES_INTERVAL_MS = 200
MIN_VIEWERS_INTERVAL_MS = 1000


class HubConfigError(ValueError):
    """A `LIVE_WS_*` setting has a value the hub cannot use."""


def _num(env: dict[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HubConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise HubConfigError(f"{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise HubConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _int(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    value = _num(env, name, default, minimum)
    if value != int(value):
        raise HubConfigError(f"{name} must be a whole number, got {env[name]!r}")
    return int(value)


@dataclass(frozen=True)
class HubSettings:
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    # A viewer whose socket stays unwritable this long is closed with 1008.
    stall_timeout_s: float = 10.0
    # Bytes queued in the transport above which writing pauses (the slow-consumer mode).
    write_high_water: int = 64 * 1024
    # Past this many queued bytes a connection is closed at once, whatever the timer says.
    write_hard_cap: int = 1024 * 1024
    max_frame_bytes: int = 64 * 1024
    max_comment_chars: int = 300
    comments_per_window: int = 5
    comment_window_s: float = 5.0
    # Likes one viewer may send per second, over all its sockets in this process.
    likes_per_second: int = 20
    # PROTOCOL: `likes` at most every 200 ms, `viewers` at most once a second.
    likes_interval_ms: int = 200
    viewers_interval_ms: int = 1000
    # Sockets one viewer token may hold open to one stream, over all processes (0: any).
    max_connections_per_viewer: int = 5
    # A process renews its sockets' places every third of this; a dead process's lapse.
    connection_lease_s: float = 30.0
    history_size: int = 1000

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> HubSettings:
        env = dict(os.environ if env is None else env)
        d = cls()
        return cls(
            ping_interval_s=_num(env, "LIVE_WS_PING_INTERVAL_S", d.ping_interval_s, 0.05),
            ping_timeout_s=_num(env, "LIVE_WS_PING_TIMEOUT_S", d.ping_timeout_s, 0.05),
            stall_timeout_s=_num(env, "LIVE_WS_STALL_TIMEOUT_S", d.stall_timeout_s, 0.05),
            write_high_water=int(_num(env, "LIVE_WS_WRITE_HIGH_WATER", d.write_high_water, 1024)),
            write_hard_cap=int(_num(env, "LIVE_WS_WRITE_HARD_CAP", d.write_hard_cap, 4096)),
            max_comment_chars=int(_num(env, "LIVE_WS_MAX_COMMENT_CHARS", d.max_comment_chars, 1)),
            comments_per_window=int(
                _num(env, "LIVE_WS_COMMENTS_PER_WINDOW", d.comments_per_window, 1)
            ),
            comment_window_s=_num(env, "LIVE_WS_COMMENT_WINDOW_S", d.comment_window_s, 0.05),
            likes_per_second=int(_num(env, "LIVE_WS_LIKES_PER_S", d.likes_per_second, 1)),
            likes_interval_ms=_int(
                env, "LIVE_WS_LIKES_INTERVAL_MS", d.likes_interval_ms, MIN_LIKES_INTERVAL_MS
            ),
            viewers_interval_ms=_int(
                env, "LIVE_WS_VIEWERS_INTERVAL_MS", d.viewers_interval_ms,
                MIN_VIEWERS_INTERVAL_MS,
            ),
            max_connections_per_viewer=_int(
                env, "LIVE_WS_MAX_CONNECTIONS_PER_VIEWER", d.max_connections_per_viewer, 0
            ),
            connection_lease_s=_num(env, "LIVE_WS_CONNECTION_LEASE_S", d.connection_lease_s, 1),
            history_size=int(_num(env, "LIVE_HISTORY_SIZE", d.history_size, 1)),
        )
