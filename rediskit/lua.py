"""The one way Lua scripts are loaded: a file of a package's `lua/` directory, with the
files holding the functions it shares with its siblings in front of it.

The source is put together once, when the `Script` is made (a missing file fails at
import, not at the first call). `register` gives a redis-py script bound to a client:
it runs EVALSHA and loads the source again after a NOSCRIPT (a restarted or flushed
server), on a single server and on a Cluster alike."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from redis.commands.core import AsyncScript


class Script:
    def __init__(self, directory: Path, name: str, head: Iterable[str | Path] = ()) -> None:
        """`head`: file names in `directory`, or paths elsewhere (an absolute path
        replaces the directory), put before `name` in that order."""
        self.name = name
        parts = [directory / part for part in (*head, name)]
        self.source = "".join(path.read_text() for path in parts)

    def register(self, redis: Any) -> AsyncScript:
        """The script bound to `redis`; made once by its owner and called as
        `await script(keys=[...], args=[...])`."""
        return redis.register_script(self.source)

    def __repr__(self) -> str:
        return f"Script({self.name!r})"
