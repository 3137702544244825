"""Settings from the environment (one parse for the whole service, bad variables named),
the generated secret file, and the README's table of them."""

from __future__ import annotations

import os
import pickle
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.services import ROOT

from live.config import ConfigError, Settings, env_name
from orders.drain_settings import DrainSettings
from realtime.settings import HubSettings


def test_defaults_match_the_protocol(tmp_path: Path) -> None:
    s = Settings.from_env({"LIVE_SECRET_FILE": str(tmp_path / "secret")})
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.redis_url is None
    assert s.database_url == "sqlite+aiosqlite:///live-data/live.db"
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


# --- one parse, every variable by name ------------------------------------------------


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update(LIVE_SECRET="x" * 32, LIVE_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("command", "name", "value"),
    [
        (["serve"], "LIVE_DRAIN_BATCH", "0"),
        (["serve", "--workers", "2"], "LIVE_WS_PING_INTERVAL_S", "soon"),
        (["serve"], "LIVE_PORT", "70000"),
        (["drain"], "LIVE_DRAIN_BLOCK_MS", "fast"),
        (["drain"], "LIVE_DRAIN_METRICS_PORT", "99999"),
        (["reconcile", "s_nothing"], "LIVE_DRAIN_CLAIM_IDLE_MS", "5"),
        (["reconcile", "s_nothing"], "LIVE_DRAIN", "maybe"),
    ],
)
def test_a_bad_variable_stops_the_command_with_one_line(
    tmp_path: Path, command: list[str], name: str, value: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "live.cli", *command], env=_clean_env(tmp_path, **{name: value}),
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert name in lines[0] and repr(value) in lines[0], lines[0]
    # Refused before anything started: no data directory, no embedded Redis.
    assert not (tmp_path / "data").exists()


def test_every_bad_variable_is_named_at_once(tmp_path: Path) -> None:
    env = {"LIVE_SECRET": "x", "LIVE_PORT": "eighty", "LIVE_WS_LIKES_PER_S": "0",
           "LIVE_DRAIN_ONLY": "s_a", "LIVE_RETENTION_INTERVAL_MS": "1"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    for name in ("LIVE_PORT", "LIVE_WS_LIKES_PER_S", "LIVE_RETENTION_INTERVAL_MS"):
        assert name in message, message
    assert "LIVE_DRAIN_ONLY" not in message  # a good value is not an error


def test_secrets_are_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"LIVE_SECRET": "x", "LIVE_ADMIN_KEY": "hunter2 hunter2!"})
    assert "LIVE_ADMIN_KEY" in str(caught.value) and "hunter2" not in str(caught.value)


def test_each_part_reads_its_own_variables(tmp_path: Path) -> None:
    s = Settings.from_env({
        "LIVE_SECRET": "x", "LIVE_HISTORY_SIZE": "7", "LIVE_WS_LIKES_PER_S": "3",
        "LIVE_DRAIN_BATCH": "9", "LIVE_DRAIN_ONLY": " s_a, s_b,,", "LIVE_DRAIN_GROUP": " g ",
        "LIVE_EVENTS_RETENTION_S": "0", "LIVE_DRAIN": "0", "LIVE_DRAIN_METRICS_PORT": "9101",
        # Names that are no setting change nothing.
        "LIVE_WS_HISTORY_SIZE": "1", "LIVE_DRAIN_BATCH_SIZE": "1", "LIVE_MAX_FRAME_BYTES": "1",
        "LIVE_WS_MAX_FRAME_BYTES": "1",
    })
    assert s.history_size == s.ws.history_size == 7
    assert s.ws.likes_per_second == 3 and s.ws.max_frame_bytes == 64 * 1024
    assert (s.drain.batch_size, s.drain.only, s.drain.group) == (9, {"s_a", "s_b"}, "g")
    assert (s.drain.events_retention_s, s.drain.metrics_port) == (0, 9101)
    assert s.drain_in_process is False
    # An empty value is the default, as if unset.
    assert Settings.from_env({"LIVE_SECRET": "x", "LIVE_DRAIN_BATCH": ""}).drain.batch_size == 500


def test_workers_get_the_parents_settings_not_their_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from live.workers import WorkerConfig

    parent = Settings.from_env({
        "LIVE_SECRET": "x", "LIVE_HISTORY_SIZE": "7", "LIVE_DRAIN_GROUP": "g",
        "LIVE_REDIS_URL": "redis://parent:6379/0",
    })
    config = WorkerConfig(parent, schema_ready=True, supervisor_pid=1234, workers=2)
    # What a spawned worker unpickles, in an environment that says otherwise.
    shipped = pickle.loads(pickle.dumps(config))
    monkeypatch.setenv("LIVE_HISTORY_SIZE", "9")
    monkeypatch.setenv("LIVE_REDIS_URL", "redis://elsewhere:6379/0")
    factory = shipped.load_app()
    assert factory.args == (parent,) and factory.args[0].secret == b"x"
    assert factory.keywords == {"schema_ready": True, "supervisor_pid": 1234}


def _readme_table() -> dict[str, str]:
    """The README's configuration table: each LIVE_* variable and its default cell."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = line.split("|")
        if not line.startswith("| `") or len(cells) < 4:
            continue
        names = re.findall(r"`(LIVE_\w+)`", cells[1])
        defaults = re.findall(r"`([^`]*)`", cells[2])
        for i, name in enumerate(names):
            rows[name] = defaults[i] if len(defaults) == len(names) else ""
    return rows


def test_the_readme_lists_every_setting_with_its_default() -> None:
    defaults = Settings()
    read: dict[str, object] = {}
    for model, values in ((Settings, defaults), (HubSettings, defaults.ws),
                          (DrainSettings, defaults.drain)):
        for field in model.model_fields:
            if field not in ("ws", "drain"):
                read[env_name(model, field)] = getattr(values, field)
    table = _readme_table()
    assert sorted(read) == sorted(table)  # each variable once, none undocumented
    for name, default in read.items():
        documented = table[name]
        if default in (None, "", b"", frozenset()) or not documented or "LIVE_" in documented:
            continue  # unset, or computed from another setting: the table says so in words
        if isinstance(default, bool):
            assert documented == ("1" if default else "0"), name
        elif isinstance(default, int | float):
            assert float(documented) == default, name
        elif isinstance(default, Path):
            assert Path(documented) == default, name
        else:
            assert documented == default, name
