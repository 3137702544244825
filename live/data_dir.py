"""The data directory (LIVE_DATA_DIR) of the embedded default: who owns it, and where
its Redis-compatible server listens.

- `live.lock` is held (flock) by the one process running the embedded server on the
  directory: `live serve`, or a `live reconcile`/`live drain` that found none running.
  Two servers on one AOF would corrupt it, so a second `live serve` refuses (exit 2).
  The kernel drops the lock when its holder dies, however it dies.
- `redis.json` says where that server listens (`port`, server `pid`, `owner` pid), so
  every `live` command run on the directory reaches the running server by itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from live.embedded_redis import EmbeddedRedis, EmbeddedRedisError, answers_ping, pid_alive

log = logging.getLogger("live.redis")

LOCK_FILE = "live.lock"
INFO_FILE = "redis.json"


class DataDirError(RuntimeError):
    """The data directory cannot be created or opened (a bad LIVE_DATA_DIR: exit 2)."""


class DataDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    @property
    def info_path(self) -> Path:
        return self.path / INFO_FILE

    def try_lock(self, command: str) -> bool:
        """Take the directory for this process; False when another process holds it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DataDirError(f"LIVE_DATA_DIR {str(self.path)!r} cannot be used: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} live {command}\n".encode(), 0)
        os.set_inheritable(fd, False)  # the server and workers must not keep it alive
        self._lock_fd = fd
        return True

    def holder(self) -> str:
        """Who holds the lock, from what its holder wrote: "pid N (live COMMAND)"."""
        try:
            pid, _, command = (self.path / LOCK_FILE).read_text().strip().partition(" ")
        except OSError:
            pid = command = ""
        return f"pid {pid} ({command})" if pid.isdigit() else "another process"

    def unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                self.info_path.unlink()
            os.close(fd)  # releases the flock

    def read_info(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def write_info(self, server: EmbeddedRedis) -> None:
        assert server.port is not None and server.process is not None
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"port": server.port, "pid": server.process.pid, "owner": os.getpid()})
        )
        tmp.replace(self.info_path)  # atomic: a reader sees the old file or the new one

    def wait_for_previous_server(self, timeout_s: float = 30.0) -> None:
        """A server of the previous owner may still be flushing its AOF (its owner was
        killed, the kernel sent it SIGTERM): starting another on the same files before it
        exits could interleave their writes. Wait for it, then kill it if it hangs."""
        info = self.read_info()
        pid = int(info.get("pid", 0)) if info else 0
        if pid <= 0 or pid == os.getpid() or not _is_redis_server(pid):
            return
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and _is_redis_server(pid):
            if time.monotonic() > deadline:
                log.warning("previous embedded server (pid %d) did not exit; killing it", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    def start_server(self) -> EmbeddedRedis:
        """Start the embedded server on the directory's persisted state (lock held)."""
        assert self._lock_fd is not None, "take the lock first"
        self.wait_for_previous_server()
        server = EmbeddedRedis(data_dir=self.path)
        server.start()
        self.write_info(server)
        return server


def _is_redis_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"valkey-server" in cmdline or b"redis-server" in cmdline


@contextlib.contextmanager
def embedded_redis_url(path: Path, command: str, wait_s: float = 15.0) -> Iterator[str]:
    """The URL of the embedded server of data directory `path`, for a `live` command
    other than serve: the running one if a process holds the directory, else one started
    on the persisted state for as long as the command runs (holding the directory, so a
    `live serve` started meanwhile refuses rather than opening the same files)."""
    data_dir = DataDir(path)
    deadline = time.monotonic() + wait_s
    while True:
        if data_dir.try_lock(command):
            try:
                server = data_dir.start_server()
                try:
                    log.info("started the embedded server of %s for this command", path)
                    yield server.url
                finally:
                    server.stop()
            finally:
                data_dir.unlock()
            return
        info = data_dir.read_info()
        if info and pid_alive(int(info.get("pid", 0))) and answers_ping(int(info.get("port", 0))):
            yield f"redis://127.0.0.1:{int(info['port'])}/0"
            return
        if time.monotonic() > deadline:
            # The holder is starting (loading a large AOF) or stuck.
            raise EmbeddedRedisError(
                f"{path} is held by {data_dir.holder()} but its server does not answer"
            )
        time.sleep(0.1)
