"""The service's settings: every `LIVE_*` variable (see the README's configuration table),
read from the environment once per command, in `Settings.from_env`.

`Settings` holds the service's own settings and composes the hub's (`ws`,
realtime/settings.py) and the drainer's (`drain`, orders/drain_settings.py). Each is a
pydantic-settings model whose fields name their variables; a bad value anywhere is one
`ConfigError` naming each bad variable and what is wrong with it. `live serve` hands the
parsed object to its workers (live/workers.py): no other code reads the environment.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from orders.drain_settings import DrainSettings
from realtime.settings import HubSettings
from telemetry.logs import FORMATS as LOG_FORMATS
from telemetry.logs import LEVELS as LOG_LEVELS


class ConfigError(ValueError):
    """A setting in the environment has a value the service cannot use."""


def _flag(value: Any) -> Any:
    # Exactly 0/1/true/false (any case): a typo must not quietly mean "off".
    if isinstance(value, str):
        raw = value.strip().lower()
        if raw not in ("0", "1", "true", "false"):
            raise ValueError("must be 0 or 1")
        return raw in ("1", "true")
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]


def load_secret(path: Path) -> bytes:
    """Read the token-signing key from `path`, creating it (mode 0600) on first use.

    O_EXCL makes creation race-free when several processes start at once: the loser
    of the race reads the winner's key instead of writing its own.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # the data directory, first time
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


DEFAULT_DATA_DIR = "./live-data"


def default_database_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'live.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LIVE_", frozen=True, validate_by_name=True, allow_inf_nan=False
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    redis_url: str | None = None
    redis_cluster: Flag = False  # LIVE_REDIS_URL names a node of a Redis Cluster
    # Where the embedded Redis keeps its state, and by default the SQLite order store and
    # the generated secret. It is created on first use.
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str = ""  # empty: SQLite in data_dir
    # LIVE_SECRET, else the key kept in secret_file (generated on first use).
    secret: bytes = Field(b"", repr=False)
    secret_file: Path | None = None  # empty: data_dir / "live.secret"
    reservation_ttl_s: int = Field(600, ge=1)
    host_token_ttl_s: int = Field(7 * 24 * 3600, ge=1)
    viewer_token_ttl_s: int = Field(24 * 3600, ge=1)
    buy_rate_per_s: int = Field(20, ge=0)
    confirm_timeout_ms: int = Field(3000, ge=1)
    log_level: str = "info"
    log_format: str = "text"
    # Identity: unset = open demo mode (sign-ups limited per client address); set = only
    # the holder of this key creates streams and viewers (viewers by `external_id`).
    admin_key: str | None = Field(None, repr=False)
    signup_per_min: int = Field(30, ge=0)
    max_products: int = Field(500, ge=1)
    # A settled reservation (and its idempotency key) stays in Redis this long.
    settled_retention_s: int = Field(3600, ge=1)
    # HTTP connection limits (live/http_limits.py).
    http_max_header_bytes: int = Field(16 * 1024, ge=1024)
    http_header_timeout_s: float = Field(10.0, ge=0.1)
    http_body_timeout_s: float = Field(30.0, ge=0.1)
    http_keepalive_s: float = Field(5.0, ge=0.1)
    # How often one service process measures the drain backlog for /healthz.
    drain_lag_report_ms: int = Field(5000, ge=100)
    # `live serve` runs a drainer in each worker (`--no-drain` turns it off).
    drain_in_process: Flag = Field(True, validation_alias="LIVE_DRAIN")
    ws: HubSettings = Field(default_factory=HubSettings)
    drain: DrainSettings = Field(default_factory=DrainSettings)

    @property
    def history_size(self) -> int:
        """LIVE_HISTORY_SIZE: the hub's resume history, and the publishers' (one value)."""
        return self.ws.history_size

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value not in LOG_FORMATS:
            raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}")
        return value

    @field_validator("admin_key")
    @classmethod
    def _admin_key(cls, key: str | None) -> str | None:
        # It travels in an Authorization header: printable ASCII, and long enough that
        # guessing it is hopeless.
        if key is not None and (
            len(key) < 16 or not key.isascii() or not key.isprintable() or " " in key
        ):
            raise ValueError("must be at least 16 printable ASCII characters, no spaces")
        return key

    @model_validator(mode="before")
    @classmethod
    def _default_database_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("database_url"):
            data_dir = Path(data.get("data_dir") or DEFAULT_DATA_DIR)
            data = {**data, "database_url": default_database_url(data_dir)}
        return data

    @model_validator(mode="after")
    def _cluster_needs_url(self) -> Settings:
        if self.redis_cluster and not self.redis_url:
            # The embedded server is a single node: a Cluster is always an external one.
            raise ValueError("LIVE_REDIS_CLUSTER=1 needs LIVE_REDIS_URL (a node of the cluster)")
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the arguments only: from_env reads the environment

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every setting from `env` (the process environment by default). Raises
        ConfigError naming each bad variable; creates the data directory's secret file
        when no LIVE_SECRET is given."""
        env = os.environ if env is None else env
        errors: list[str] = []
        parts = {"ws": _read(HubSettings, env, errors), "drain": _read(DrainSettings, env, errors)}
        settings = _read(cls, env, errors, **{k: v for k, v in parts.items() if v is not None})
        if settings is None or errors:
            raise ConfigError("; ".join(errors))
        data_dir = settings.data_dir
        if data_dir.exists() and not data_dir.is_dir():
            raise ConfigError(f"LIVE_DATA_DIR {str(data_dir)!r} exists and is not a directory")
        if not settings.secret:
            path = settings.secret_file or data_dir / "live.secret"
            settings = settings.model_copy(update={"secret": load_secret(path)})
        return settings


# Values that must never be echoed in an error message.
_SECRET_VARIABLES = frozenset({"LIVE_SECRET", "LIVE_ADMIN_KEY"})


def env_name(model: type[BaseSettings], field_name: str) -> str:
    """The one variable a field is read from: its alias, or prefix + NAME."""
    alias = model.model_fields[field_name].validation_alias
    if isinstance(alias, str):
        return alias
    return str(model.model_config.get("env_prefix", "")) + field_name.upper()


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over `env`, each field read under exactly
    one name (`env_name`); an empty value counts as unset. Fields holding other settings
    (`ws`, `drain`) are read by their own models, not from one variable."""

    def __init__(self, model: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(model, case_sensitive=True)
        self.env_vars = {k: v for k, v in env.items() if v != ""}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings):
            return None, field_name, False
        return self.env_vars.get(env_name(self.settings_cls, field_name)), field_name, False


M = TypeVar("M", bound=BaseSettings)


def _read(model: type[M], env: Mapping[str, str], errors: list[str], **given: Any) -> M | None:
    try:
        return model(**_Environment(model, env)(), **given)
    except ValidationError as exc:
        errors.extend(_describe(model, exc))
        return None


def _describe(model: type[BaseSettings], exc: ValidationError) -> list[str]:
    """One phrase per error: the variable, what is wrong, and the value given."""
    out = []
    for error in exc.errors():
        msg = error["msg"].removeprefix("Value error, ")
        loc = error["loc"]
        if not loc:  # a check across fields: its message names the variables
            out.append(msg)
            continue
        name = env_name(model, str(loc[0]))
        msg = msg[:1].lower() + msg[1:]
        if name in _SECRET_VARIABLES:
            out.append(f"{name}: {msg}")
        else:
            out.append(f"{name}: {msg} (got {error['input']!r})")
    return out
