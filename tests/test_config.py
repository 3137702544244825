"""Settings from the environment, and the generated secret file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from live.config import ConfigError, Settings


def test_defaults_match_the_protocol(tmp_path: Path) -> None:
    s = Settings.from_env({"LIVE_SECRET_FILE": str(tmp_path / "secret")})
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.redis_url is None
    assert s.database_url == "sqlite+aiosqlite:///./live.db"
    assert s.reservation_ttl_s == 600


def test_environment_overrides(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "LIVE_HOST": "0.0.0.0",
            "LIVE_PORT": "9000",
            "LIVE_REDIS_URL": "redis://example:6379/1",
            "LIVE_DATABASE_URL": "postgresql+asyncpg://u@h/db",
            "LIVE_SECRET": "s3cret",
            "LIVE_RESERVATION_TTL_S": "30",
        }
    )
    assert (s.host, s.port, s.redis_url) == ("0.0.0.0", 9000, "redis://example:6379/1")
    assert s.database_url == "postgresql+asyncpg://u@h/db"
    assert s.secret == b"s3cret"
    assert s.reservation_ttl_s == 30


def test_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    first = Settings.from_env({"LIVE_SECRET_FILE": str(path)}).secret
    second = Settings.from_env({"LIVE_SECRET_FILE": str(path)}).secret
    assert first == second and len(first) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIVE_PORT", "eighty"),
        ("LIVE_RESERVATION_TTL_S", "0"),
        ("LIVE_RESERVATION_TTL_S", "-5"),
        ("LIVE_BUY_RATE_PER_S", "-1"),
        ("LIVE_BUY_RATE_PER_S", "fast"),
    ],
)
def test_bad_values_are_configuration_errors(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"LIVE_SECRET": "x", name: value})
