"""Command-line options of the load test (Locust custom arguments, also shown in the web UI).

Locust forwards custom options from the master to its workers, so every process of a
distributed run sees the same values.
"""

from __future__ import annotations

from typing import Any

from locust import events


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    g = parser
    # Which stream: a fresh one created at test start, or an existing one.
    g.add_argument("--stream-id", default="", help="use this existing stream (needs --host-token)")
    g.add_argument("--host-token", default="", is_secret=True, help="host token of --stream-id")
    g.add_argument(
        "--admin-key",
        default="",
        env_var="LOCUST_ADMIN_KEY",
        is_secret=True,
        help="the target's LIVE_ADMIN_KEY: streams and viewers are created with it, each "
        "viewer with an external_id of its own",
    )
    g.add_argument("--products", type=int, default=3, help="products the setup lists")
    g.add_argument("--stock", type=int, default=1000, help="stock of each product")
    g.add_argument(
        "--run-file",
        default="loadtest/out/run.json",
        help="where the master writes the stream id, host token and viewer tallies",
    )
    # Audience behaviour.
    g.add_argument("--buyer-share", type=float, default=0.2, help="fraction of users who buy")
    g.add_argument(
        "--chat-every",
        type=float,
        default=5.0,
        help="mean seconds between one viewer's comments/likes",
    )
    g.add_argument(
        "--comment-share", type=float, default=0.2, help="fraction of actions that are comments"
    )
    g.add_argument(
        "--min-comment-gap",
        type=float,
        default=1.1,
        help="least seconds between one viewer's comments (server limit: 5 per 5 s)",
    )
    g.add_argument(
        "--buy-over",
        choices=["ws", "http", "mixed"],
        default="ws",
        help="how buyers reserve: websocket `buy`, HTTP, or half each",
    )
    g.add_argument(
        "--confirm-ratio",
        type=float,
        default=0.8,
        help="fraction of reservations confirmed; the rest are abandoned (DELETE)",
    )
    g.add_argument(
        "--latency-sample",
        type=float,
        default=1.0,
        help="fraction of deliveries reported to Locust's stats (counts stay exact)",
    )
    # The host's schedule, in seconds since the test started.
    g.add_argument(
        "--first-sale-at",
        type=float,
        default=-1,
        help="first flash sale (default: --surge-at with the surge shape, else 5)",
    )
    g.add_argument("--sale-every", type=float, default=30, help="seconds between flash sales")
    g.add_argument("--sale-duration", type=int, default=20, help="seconds a flash sale lasts")
    g.add_argument("--sale-stock", type=int, default=100, help="units offered in each sale")
    g.add_argument("--sale-limit", type=int, default=1, help="per-user limit in a sale")
    g.add_argument("--message-every", type=float, default=10, help="seconds between host messages")
    g.add_argument("--pin-every", type=float, default=20, help="seconds between pins")
    # Load shapes (used with -f loadtest/locustfile.py,loadtest/shapes.py).
    g.add_argument(
        "--shape",
        choices=["steady", "surge", "spike"],
        default="steady",
        help="load shape when shapes.py is loaded",
    )
    g.add_argument("--viewers", type=int, default=100, help="base audience of the shapes")
    g.add_argument("--ramp", type=float, default=50, help="users started per second at first")
    g.add_argument("--duration", type=float, default=120, help="seconds the shape runs")
    g.add_argument("--surge-at", type=float, default=30, help="seconds until surge/spike")
    g.add_argument("--surge-factor", type=float, default=10, help="audience multiple at the peak")
    g.add_argument("--surge-ramp", type=float, default=30, help="seconds to reach the peak")
    g.add_argument("--peak-hold", type=float, default=30, help="seconds at the peak")
    g.add_argument(
        "--wind-down",
        type=float,
        default=12,
        help="seconds the shapes spend stopping users before the test ends",
    )
    g.add_argument("--drain", type=float, default=20, help="spike: seconds back to the base")
