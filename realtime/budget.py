"""A per-socket allowance of requests per minute (resumes, pings)."""

from __future__ import annotations

import time


class Budget:
    """At most `per_min` uses in each minute since the first use of that minute; 0 means
    no limit. A fixed window is enough here: it bounds what one socket can make the
    server send, and costs two numbers per socket."""

    __slots__ = ("per_min", "used", "window_end")

    def __init__(self, per_min: int) -> None:
        self.per_min = per_min
        self.used = 0
        self.window_end = 0.0

    def take(self) -> bool:
        if self.per_min <= 0:
            return True
        now = time.monotonic()
        if now >= self.window_end:
            self.window_end = now + 60.0
            self.used = 0
        self.used += 1
        return self.used <= self.per_min
