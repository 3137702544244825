"""How `live serve` runs uvicorn: every worker gets the settings the parent parsed.

uvicorn pickles its `Config` into each worker process it spawns. `WorkerConfig` carries
the parent's `Settings` in it, serialized once as JSON (a string: unpickling it imports
nothing before the worker answers uvicorn's health checks: this module imports neither
the settings nor the app at its top), together with what the parent did for its workers
(created the schema, supervises them). A worker builds its application from exactly
that, not from its own environment.
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any

from uvicorn import Config, Server
from uvicorn.main import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

if TYPE_CHECKING:
    from live.config import Settings


class WorkerConfig(Config):
    def __init__(
        self,
        settings: Settings,
        *,
        schema_ready: bool,
        supervisor_pid: int | None,
        **uvicorn_options: Any,
    ) -> None:
        super().__init__("live.app:create_app", factory=True, **uvicorn_options)
        self.settings_json = settings.model_dump_json()
        self.schema_ready = schema_ready
        self.supervisor_pid = supervisor_pid

    def load_app(self) -> Any:
        # uvicorn calls this in each worker, then calls what it returns (the factory).
        from live.app import create_app
        from live.config import Settings

        return functools.partial(
            create_app,
            Settings.model_validate_json(self.settings_json),
            schema_ready=self.schema_ready,
            supervisor_pid=self.supervisor_pid,
        )


def run(config: WorkerConfig) -> None:
    """What `uvicorn.run` does with its Config, for ours: it refuses an application
    that is not an import string when there are workers, and cannot take a Config."""
    server = Server(config)
    try:
        if config.workers > 1:
            sock = config.bind_socket()
            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    if not server.started and config.workers == 1:
        sys.exit(STARTUP_FAILURE)
