"""Browser tests' tools: Debian's chromium driven by Playwright, and a TCP proxy between
the browser and the service that can cut every connection (a dropped network).

Browser tests never skip: without chromium or the playwright package they fail and say
what to install (`make test` installs chromium with apt when it can)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# Imported before any browser runs: Playwright's driver connection switches greenlets,
# after which CPython 3.11 refuses to ast.parse (pytest's assertion rewriting) a module
# imported late, and hypothesis's pytest plugin imports its observability module lazily
# at the end of the session. (A module already imported is not parsed again.)
import hypothesis.internal.observability  # noqa: F401
import pytest
from helpers.services import ServiceProcess, service_env

__all__ = ["BROWSER_ARGS", "LAPTOP", "PHONE", "CutProxy", "ServiceProcess", "api", "join",
           "launch_chromium", "page_errors", "service_env"]

CHROMIUM = os.environ.get("LIVE_TEST_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2}
LAPTOP = {"viewport": {"width": 1366, "height": 768}}


def require_browser() -> None:
    """Fail (never skip) with what to install when the browser or playwright is missing."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"browser tests need Debian's chromium at {CHROMIUM}: run "
            "`apt-get install -y chromium` (as root), or set LIVE_TEST_CHROMIUM to a "
            "Chromium binary. Never `playwright install`.",
            pytrace=False,
        )
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail(
            "browser tests need the playwright package: `make install` (the test extra)",
            pytrace=False,
        )


def page_errors(page: Any) -> list[str]:
    """Uncaught script errors of the page, collected from now on (there must be none)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


async def api(base: str, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
    """One API call beside the browser; it must succeed."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.request(method, base + path, headers=headers, **kw)
    assert r.status_code < 300, r.text
    return r.json()


async def join(viewer: Any, name: str) -> None:
    """Sign up on the watch page and wait for the viewer's own socket. The page watches
    anonymously until then, so "live" alone can be the old socket's: the dialog closes
    when the sign-up answered, and the socket that carries the token says "live" after."""
    from playwright.async_api import expect

    await viewer.get_by_test_id("viewer-name").fill(name)
    await viewer.get_by_test_id("join").click()
    await expect(viewer.locator("dialog#join")).not_to_be_visible()
    await expect(viewer.get_by_test_id("connection-state")).to_have_attribute("data-state", "live")


@contextlib.asynccontextmanager
async def launch_chromium() -> AsyncIterator[Any]:
    """Playwright's asyncio API (its sync API runs on greenlets, which upset CPython's
    compiler for whatever pytest imports afterwards)."""
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class CutProxy:
    """127.0.0.1 TCP proxy in front of a service, run on a thread of its own.

    `cut()` aborts every open connection and refuses new ones until `restore()`: what a
    viewer's phone sees when its network drops. Every byte clients send is kept, so a
    test can check what reached the server (a host token must never be in a URL)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.down = False
        self.sent = bytearray()
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cut-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CutProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            server.close()
            for w in list(self._writers):
                w.transport.abort()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self._loop.run_until_complete(main())
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            try:
                while data := await src.read(65536):
                    if keep:
                        self.sent += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        # Swallowing the cancellation on stop: asyncio 3.11's stream server asks a
        # finished client task for its exception, which raises for a cancelled one.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                pipe(reader, up_writer, True), pipe(up_reader, writer, False),
                return_exceptions=True,
            )
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    def cut(self) -> None:
        def do() -> None:
            self.down = True
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(do)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(lambda: setattr(self, "down", False))

    def request_targets(self) -> list[str]:
        """The request targets (path and query) of every HTTP request seen so far."""
        pattern = rb"(?:GET|POST|PUT|DELETE|HEAD|PATCH|OPTIONS) (\S+) HTTP/1\.[01]\r\n"
        return [m.decode("latin-1") for m in re.findall(pattern, bytes(self.sent))]

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
