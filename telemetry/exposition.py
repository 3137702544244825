"""Prometheus exposition over every process of a `live serve`, and the private
directory its workers keep their values in."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_http_server,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "livecart-metrics-"
_LIVE_GAUGE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")

__all__ = ["CONTENT_TYPE_LATEST", "exposition", "multiprocess_dir"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed worker stays a zombie until its supervisor reaps it, and uvicorn's can be
    # blocked meanwhile for its whole health-check timeout (30 s here) waiting on a ping
    # the dead worker never answers: a zombie's sockets are closed, so it counts as dead.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc (not Linux): the signal check above is all there is
    # The state follows the command name, which is in parentheses and may hold any byte.
    return stat.rpartition(b")")[2].split()[:1] != [b"Z"]


def exposition() -> bytes:
    """The text format: summed over every worker when they share a multiprocess
    directory, else this process's own registry."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return generate_latest(REGISTRY)
    # A worker that died (and was replaced) must not keep counting its sockets.
    for name in os.listdir(path):
        match = _LIVE_GAUGE.match(name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


def serve_metrics(port: int, host: str) -> None:
    """`GET /metrics` on a port of its own, for a process without HTTP (`live drain`)."""
    registry = REGISTRY
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
    start_http_server(port, addr=host, registry=registry)


def _remove_stale_dirs() -> None:
    """Directories left by a `live serve` that was killed (SIGKILL cannot clean up)."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{DIR_PREFIX}*-*")):
        pid = os.path.basename(path)[len(DIR_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[str]:
    """A private directory for the workers' metric files, named after this process and
    removed on exit. The workers must be started after this sets the variable (the
    client picks its storage when it is first imported)."""
    if os.environ.get(MULTIPROC_ENV):
        yield os.environ[MULTIPROC_ENV]  # the operator chose one: theirs to manage
        return
    _remove_stale_dirs()
    path = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
