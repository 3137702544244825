"""The `live` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from live.app import SCHEMA_READY_ENV
from live.config import ConfigError, Settings
from live.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from live.lifetime import SUPERVISOR_ENV

log = logging.getLogger("live")

# Our own uvicorn websocket protocol: it serves /ws/streams/{id} without going through
# per-viewer ASGI sends (see realtime/server.py).
WS_PROTOCOL = "realtime.server:HubProtocol"


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )


async def _prepare_schema(url: str) -> None:
    from orders.db import create_schema, make_engine

    engine = make_engine(url)
    try:
        await create_schema(engine)
    finally:
        await engine.dispose()


def _check_worker_settings() -> str | None:
    """Workers read the hub and drain settings when they start; a bad value is reported
    here, before anything starts, rather than as a worker's traceback."""
    from orders.drain import DrainSettings
    from realtime.settings import HubSettings

    try:
        HubSettings.from_env()
        DrainSettings.from_env()
    except ValueError as exc:
        return str(exc)
    return None


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    error = _check_worker_settings()
    if error is not None:
        print(f"live serve: configuration error: {error}", file=sys.stderr)
        return 2
    embedded: EmbeddedRedis | None = None
    try:
        if settings.redis_url is None:
            embedded = EmbeddedRedis()
            # Workers read the URL from the environment they inherit.
            os.environ["LIVE_REDIS_URL"] = embedded.start()
        asyncio.run(_prepare_schema(settings.database_url))
        os.environ[SCHEMA_READY_ENV] = "1"
        if args.no_drain:
            os.environ["LIVE_DRAIN"] = "0"
        if args.workers > 1:
            os.environ[SUPERVISOR_ENV] = str(os.getpid())
        # uvicorn handles SIGINT/SIGTERM while it runs and re-raises them once it has
        # shut down; these handlers make that re-raise a no-op so that we get here to
        # stop the embedded server and exit 0.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        log.info(
            "serving on http://%s:%d with %d worker(s)", args.host, args.port, args.workers
        )
        uvicorn.run(
            "live.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            ws=WS_PROTOCOL,
            lifespan="on",
            log_level=settings.log_level,
            access_log=args.access_log,
            timeout_graceful_shutdown=10,
            # Longer than common client pools keep idle connections, so a request is
            # rarely sent on a connection the server is just closing.
            timeout_keep_alive=75,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _shared_redis_url(settings: Settings, command: str) -> str | None:
    if settings.redis_url is None:
        # An embedded Redis of its own would hold no events: it must share the service's.
        print(f"live {command}: set LIVE_REDIS_URL to the service's Redis", file=sys.stderr)
    return settings.redis_url


def cmd_drain(args: argparse.Namespace, settings: Settings) -> int:
    from orders.drain import DrainSettings
    from orders.runner import run_drainer

    redis_url = _shared_redis_url(settings, "drain")
    if redis_url is None:
        return 2
    try:
        drain_settings = DrainSettings.from_env()
    except ValueError as exc:
        print(f"live drain: configuration error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_drainer(redis_url, settings.database_url, drain_settings))


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from orders.runner import run_reconcile

    redis_url = _shared_redis_url(settings, "reconcile")
    if redis_url is None:
        return 2
    return asyncio.run(
        run_reconcile(redis_url, settings.database_url, args.stream_id, args.wait)
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
    rec.set_defaults(func=cmd_reconcile)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"live: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    args = build_parser(settings.host, settings.port).parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        print("live: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings))
    except EmbeddedRedisError as exc:
        print(f"live: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
