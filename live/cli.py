"""The `live` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from live.data_dir import DataDir, DataDirError, embedded_redis_url
from live.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from telemetry.exposition import multiprocess_dir, serve_metrics
from telemetry.logs import logging_config, setup_logging

if TYPE_CHECKING:
    from live.config import Settings

log = logging.getLogger("live")

# Our own uvicorn websocket protocol: it serves /ws/streams/{id} without going through
# per-viewer ASGI sends (see realtime/server.py).
WS_PROTOCOL = "realtime.server:HubProtocol"
# uvicorn's httptools protocol plus a header-size cap and read timeouts (live/http_limits.py).
HTTP_PROTOCOL = "live.http_limits:LimitedHttpToolsProtocol"

# uvicorn's supervisor pings each worker every half second and SIGKILLs (then replaces)
# one that has not answered within this many seconds. A worker answers from a thread it
# starts only once its interpreter has re-imported this module (multiprocessing's spawn
# runs `__main__` again), so this module imports nothing heavy (the settings and the app
# are imported inside functions, the worker's after the answering thread runs), and the
# allowance is well above uvicorn's 5 s default: on a loaded machine a worker that was
# slow to start was killed and replaced again and again. A hung worker is still
# replaced, only later. The same wait delays replacing a worker that was killed: on a
# loaded machine the supervisor noticed a SIGKILLed worker only after these 30 s (it
# waits out a ping the dead worker never answers); the other workers serve meanwhile,
# and /metrics stops counting the dead worker's sockets at once (telemetry/exposition.py).
WORKER_HEALTHCHECK_TIMEOUT_S = 30


async def _prepare_schema(url: str) -> None:
    from orders.db import create_schema, make_engine

    engine = make_engine(url)
    try:
        await create_schema(engine)
    finally:
        await engine.dispose()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from live import workers

    embedded: EmbeddedRedis | None = None
    stack = contextlib.ExitStack()
    data_dir = DataDir(settings.data_dir)
    if settings.redis_url is None and not data_dir.try_lock("serve"):
        # Two embedded servers on one AOF would corrupt it.
        print(
            f"live serve: data directory {settings.data_dir} is in use by "
            f"{data_dir.holder()}; stop it first, or set LIVE_DATA_DIR to another directory",
            file=sys.stderr,
        )
        return 2
    try:
        if settings.redis_url is None:
            log.info("embedded Redis keeps its state in %s", settings.data_dir.resolve())
            embedded = data_dir.start_server()
            settings = settings.model_copy(update={"redis_url": embedded.url})
        asyncio.run(_prepare_schema(settings.database_url))
        if args.no_drain:
            settings = settings.model_copy(update={"drain_in_process": False})
        # uvicorn handles SIGINT/SIGTERM while it runs and re-raises them once it has
        # shut down; these handlers make that re-raise a no-op so that we get here to
        # stop the embedded server and exit 0.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        log.info(
            "serving on http://%s:%d with %d worker(s)", args.host, args.port, args.workers
        )
        if args.workers > 1:
            # Workers keep their metrics in a shared private directory, so that
            # `GET /metrics` on any of them sums them all; removed on exit.
            stack.enter_context(multiprocess_dir())
        config = workers.WorkerConfig(
            settings,
            # The workers do not race to create the tables.
            schema_ready=True,
            # Workers stop with the supervisor, however it dies.
            supervisor_pid=os.getpid() if args.workers > 1 else None,
            host=args.host,
            port=args.port,
            workers=args.workers,
            http=HTTP_PROTOCOL,
            ws=WS_PROTOCOL,
            lifespan="on",
            log_level=settings.log_level,
            # The same format for uvicorn's lines and for the workers' own loggers.
            log_config=logging_config(settings.log_level, settings.log_format),
            access_log=args.access_log,
            timeout_graceful_shutdown=10,
            # Idle keep-alive connections are closed after this (clients that reuse
            # connections retry a request that raced the close; loadtest/ does).
            timeout_keep_alive=settings.http_keepalive_s,
            # Only used if uvicorn runs its h11 protocol; ours caps the head itself.
            h11_max_incomplete_event_size=settings.http_max_header_bytes,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT_S,
        )
        workers.run(config)
    finally:
        stack.close()
        if embedded is not None:
            embedded.stop()
        data_dir.unlock()
    return 0


@contextlib.contextmanager
def _shared_redis_url(settings: Settings, command: str) -> Iterator[str]:
    """LIVE_REDIS_URL, or else the embedded server of LIVE_DATA_DIR: the one `live serve`
    runs there, or one started on its persisted state while this command runs."""
    if settings.redis_url is not None:
        yield settings.redis_url
        return
    with embedded_redis_url(settings.data_dir, command) as url:
        yield url


def cmd_drain(args: argparse.Namespace, settings: Settings) -> int:
    from orders.runner import run_drainer

    metrics_port = settings.drain.metrics_port
    if metrics_port:
        # Its own counters (orders drained, batches, failures), for Prometheus.
        serve_metrics(metrics_port, settings.host)
        log.info("drainer metrics on http://%s:%d/metrics", settings.host, metrics_port)
    with _shared_redis_url(settings, "drain") as redis_url:
        return asyncio.run(
            run_drainer(redis_url, settings.database_url, settings.drain, settings.redis_cluster)
        )


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from orders.runner import run_reconcile

    with _shared_redis_url(settings, "reconcile") as redis_url:
        return asyncio.run(
            run_reconcile(
                redis_url,
                settings.database_url,
                args.stream_id,
                args.wait,
                repair=args.repair,
                drop_dead_letters=args.drop_dead_letters,
                cluster=settings.redis_cluster,
                group=settings.drain.group,
            )
        )


def build_parser(settings_host: str, settings_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="live", description="livecart live-selling service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP + websocket service")
    serve.add_argument("--host", default=settings_host, help="address to listen on")
    serve.add_argument("--port", type=int, default=settings_port, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.add_argument(
        "--no-drain", action="store_true", help="do not run the order drainer in-process"
    )
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request")
    serve.set_defaults(func=cmd_serve)

    drain = sub.add_parser("drain", help="run the order drainer alone (Redis -> SQL)")
    drain.set_defaults(func=cmd_drain)

    rec = sub.add_parser("reconcile", help="compare a stream's Redis and SQL orders")
    rec.add_argument("stream_id", help="id of the stream to check")
    rec.add_argument(
        "--wait", type=float, default=10.0, help="seconds to wait for the drainer to catch up"
    )
    rec.add_argument(
        "--repair",
        action="store_true",
        help="rebuild the stream's Redis stock from SQL merged with Redis, replay its "
        "dead letters, then compare again",
    )
    rec.add_argument(
        "--drop-dead-letters",
        action="store_true",
        help="discard the stream's dead letters (after you dealt with them)",
    )
    rec.set_defaults(func=cmd_reconcile)
    return parser


def main(argv: list[str] | None = None) -> int:
    from live.config import ConfigError, Settings

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"live: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    args = build_parser(settings.host, settings.port).parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        print("live: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings))
    except DataDirError as exc:
        print(f"live: configuration error: {exc}", file=sys.stderr)
        return 2
    except EmbeddedRedisError as exc:
        print(f"live: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
