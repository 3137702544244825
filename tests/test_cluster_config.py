"""LIVE_REDIS_CLUSTER: a flag, and only with LIVE_REDIS_URL; bad values stop `live`
with exit code 2 and a message naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, service_env

from live.config import ConfigError, Settings


def test_cluster_flag() -> None:
    base = {"LIVE_SECRET": "x", "LIVE_REDIS_URL": "redis://node:7000"}
    assert Settings.from_env(base).redis_cluster is False
    for value, expected in (("1", True), ("true", True), ("0", False), ("", False)):
        assert Settings.from_env({**base, "LIVE_REDIS_CLUSTER": value}).redis_cluster is expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LIVE_REDIS_URL": "redis://node:7000", "LIVE_REDIS_CLUSTER": "yes"},
         "LIVE_REDIS_CLUSTER: must be 0 or 1"),
        ({"LIVE_REDIS_CLUSTER": "1"}, "LIVE_REDIS_CLUSTER=1 needs LIVE_REDIS_URL"),
    ],
)
def test_bad_cluster_settings_are_configuration_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"LIVE_SECRET": "x", **env})


def test_live_serve_exits_2_on_a_bad_cluster_flag() -> None:
    env = {"LIVE_REDIS_URL": "redis://node:7000", "LIVE_REDIS_CLUSTER": "yes"}
    message = "LIVE_REDIS_CLUSTER: must be 0 or 1"
    full = service_env(None, "sqlite+aiosqlite:///:memory:", **env)
    done = subprocess.run(
        [sys.executable, "-m", "live.cli", "serve"], env=full, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
