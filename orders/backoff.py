"""The one retry-with-back-off of the order drainer (tenacity), for a batch SQL refuses
for now and for restarting the drainer loop after an unexpected error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity import wait_exponential_jitter as wait_exp


async def sleep_or_stop(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def retrying(
    stop: asyncio.Event | None,
    max_s: float,
    retry_on: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, float], Any] | None = None,
    initial_s: float = 0.05,
) -> AsyncRetrying:
    """Retry while `retry_on(exc)`, waiting exponentially longer (with jitter) up to
    `max_s`, until `stop` is set: then the last exception is raised. `on_retry(exc,
    wait)` runs before each wait (count and log there)."""

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            wait = state.next_action.sleep if state.next_action else 0.0
            if exc is not None:
                on_retry(exc, wait)

    return AsyncRetrying(
        wait=wait_exp(multiplier=initial_s, max=max_s, jitter=initial_s),
        retry=retry_if_exception(
            lambda exc: not isinstance(exc, asyncio.CancelledError) and retry_on(exc)
        ),
        stop=lambda _state: stop is not None and stop.is_set(),
        sleep=lambda seconds: sleep_or_stop(stop, seconds),
        before_sleep=before_sleep,
        reraise=True,
    )
