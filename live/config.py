"""Settings read from the environment (see the README's configuration table)."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A setting in the environment has a value the service cannot use."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def load_secret(path: Path) -> bytes:
    """Read the token-signing key from `path`, creating it (mode 0600) on first use.

    O_EXCL makes creation race-free when several processes start at once: the loser
    of the race reads the winner's key instead of writing its own.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            key = path.read_text().strip()
            if key:
                return key.encode()
            # Another process created the file and has not written it yet.
            time.sleep(0.01)
        raise ConfigError(f"secret file {path} is empty") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key.encode()


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    database_url: str = "sqlite+aiosqlite:///./live.db"
    secret: bytes = field(default=b"", repr=False)
    reservation_ttl_s: int = 600
    host_token_ttl_s: int = 7 * 24 * 3600
    viewer_token_ttl_s: int = 24 * 3600
    max_body_bytes: int = 64 * 1024
    history_size: int = 1000
    buy_rate_per_s: int = 20
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        secret = env.get("LIVE_SECRET", "")
        if not secret:
            path = Path(env.get("LIVE_SECRET_FILE") or "./live.secret")
            secret_bytes = load_secret(path)
        else:
            secret_bytes = secret.encode()
        return cls(
            host=env.get("LIVE_HOST") or "127.0.0.1",
            port=_int(env, "LIVE_PORT", 8000),
            redis_url=env.get("LIVE_REDIS_URL") or None,
            database_url=env.get("LIVE_DATABASE_URL") or "sqlite+aiosqlite:///./live.db",
            secret=secret_bytes,
            reservation_ttl_s=_int(env, "LIVE_RESERVATION_TTL_S", 600, minimum=1),
            host_token_ttl_s=_int(env, "LIVE_HOST_TOKEN_TTL_S", 7 * 24 * 3600, minimum=1),
            viewer_token_ttl_s=_int(env, "LIVE_VIEWER_TOKEN_TTL_S", 24 * 3600, minimum=1),
            history_size=_int(env, "LIVE_HISTORY_SIZE", 1000, minimum=1),
            buy_rate_per_s=_int(env, "LIVE_BUY_RATE_PER_S", 20, minimum=0),
            log_level=(env.get("LIVE_LOG_LEVEL") or "info").lower(),
        )
