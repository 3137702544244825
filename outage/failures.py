"""Logging unexpected failures of a loop once per kind, not once per turn."""

from __future__ import annotations

import logging


class FailureLog:
    """The first failure of a kind (exception type and message) is logged with its
    traceback; repeats are counted silently; the next success after failures logs one
    line with the count."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.seen: dict[str, int] = {}

    def failed(self, exc: BaseException, action: str = "retrying") -> bool:
        """Returns True when this kind of failure is new (and was logged)."""
        kind = f"{type(exc).__name__}: {exc}"[:300]
        n = self.seen.get(kind, 0)
        self.seen[kind] = n + 1
        if n == 0:
            self.logger.error("%s failed (%s); %s", self.what, kind, action, exc_info=exc)
            return True
        return False

    def succeeded(self) -> None:
        if not self.seen:
            return
        total = sum(self.seen.values())
        self.logger.warning(
            "%s works again after %d failure(s) of %d kind(s)", self.what, total, len(self.seen)
        )
        self.seen.clear()
