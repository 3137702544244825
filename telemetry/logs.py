"""Log output of every `live` command and of uvicorn: plain text lines (default) or one
JSON object per line (`LIVE_LOG_FORMAT=json`).

A JSON line has `ts` (ISO 8601, UTC), `level`, `event` (the message), `logger`, and the
context fields the call passed with `extra=` (`stream`, `viewer`, `reservation`, `sale`,
`consumer`, ...); a traceback goes into `exc_info` as one string.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


class LiveJsonFormatter(JsonFormatter):
    """python-json-logger's formatter, plus uvicorn's access-log arguments as fields."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            if len(record.args) == 5:
                client, method, path, _, status = record.args
                log_data.update(client=client, method=method, path=path, status=status)


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` document: one stderr handler on the root logger,
    and uvicorn's loggers sent through it (so its lines share the format). uvicorn is
    given the same document for its worker processes (`log_config`)."""
    formatter: dict[str, Any]
    if fmt == "json":
        formatter = {
            "()": "telemetry.logs.LiveJsonFormatter",
            "fmt": "{levelname}{message}{name}",
            "style": "{",
            "rename_fields": {"levelname": "level", "message": "event", "name": "logger"},
            "timestamp": "ts",
            # uvicorn adds an ANSI-coloured copy of some messages: not a context field.
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    uvicorn = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"live": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "live",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": uvicorn,
            "uvicorn.error": uvicorn,
            "uvicorn.access": uvicorn,
        },
    }


def setup_logging(level: str, fmt: str = "text") -> dict[str, Any]:
    config = logging_config(level, fmt)
    logging.config.dictConfig(config)
    return config
