"""A private `redis-server` for fault tests: its own port and directory, so a test can
SIGKILL it, stop it, put an older snapshot back and start it again on the same port."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import free_port


class RedisProcess:
    def __init__(self, directory: Path, appendonly: bool = False) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def rdb(self) -> Path:
        return self.dir / "dump.rdb"

    def start(self, timeout_s: float = 15.0) -> RedisProcess:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        assert binary, "redis-server is not on PATH"
        cmd = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--dbfilename", "dump.rdb", "--save", "", "--protected-mode", "no",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
        ]
        log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.dir / "redis.log").read_text()
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One command over a plain socket (RESP), its raw reply."""
        payload = f"*{len(args)}\r\n".encode()
        for a in args:
            payload += f"${len(a.encode())}\r\n{a}\r\n".encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(payload)
            return s.recv(65536)

    def snapshot(self, name: str) -> Path:
        """SAVE now and keep a copy of the RDB as `name`."""
        assert self.command("SAVE").startswith(b"+OK")
        copy = self.dir / name
        shutil.copy(self.rdb, copy)
        return copy

    def kill(self) -> None:
        """SIGKILL: whatever was not persisted is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restore(self, snapshot: Path) -> None:
        """Put an older snapshot in place (the server must be down)."""
        assert self.proc is None or self.proc.poll() is not None
        shutil.copy(snapshot, self.rdb)
        aof = self.dir / "appendonlydir"
        if aof.exists():
            shutil.rmtree(aof)
