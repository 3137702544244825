"""One error type for every rule a request can break, whatever the layer or transport.

A rule is checked once, where it belongs (the inventory scripts, a route's own check),
and raises a `DomainError` with the protocol's error code (docs/protocol.md). Nobody
re-wraps it on the way up: HTTP maps the code to a status in one table
(live/errors.py) and the websocket sends `{"type": "error", "code", "detail"}` as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class DomainError(Exception):
    """A request broke a rule. `code`: the protocol's error code; `detail`: the same in
    words for the client (a subclass's `details` table words its own codes);
    `retry_after`: seconds after which trying again may succeed."""

    details: ClassVar[Mapping[str, str]] = {}

    def __init__(self, code: str, detail: str = "", *, retry_after: int | None = None) -> None:
        self.code = code
        self.detail = detail or self.details.get(code) or code.replace("_", " ")
        self.retry_after = retry_after
        super().__init__(f"{code}: {self.detail}")
