"""Every Prometheus metric livecart records, defined once.

The objects live here, below every package, so `realtime/` and `orders/` record their
own figures without importing `live/` (which serves them at `GET /metrics`).

Under `live serve --workers N` the values are kept in prometheus-client's multiprocess
files (`PROMETHEUS_MULTIPROC_DIR`, set by `live serve`), so one scrape of any worker
sums them all; gauges say how their per-process values combine (`multiprocess_mode`).

Hot paths record in bulk: the fan-out counts one `inc(n)` per broadcast for its n
deliveries, never one call per socket write.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Latency buckets: from a Redis round trip on loopback (~100 µs) to a stalled request.
FAST_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- websocket hub (realtime/) ---------------------------------------------------------

WS_CONNECTIONS = Gauge(
    "livecart_ws_connections",
    "Open viewer websockets (past their hello), over all workers",
    multiprocess_mode="livesum",
)
WS_BROADCASTS = Counter(
    "livecart_ws_broadcasts",
    "Broadcast messages a worker received from Redis and fanned out to its viewers",
)
WS_MESSAGES_SENT = Counter(
    "livecart_ws_messages_sent",
    "Broadcast messages written to viewers' sockets (one per message per viewer)",
)
WS_MESSAGES_DROPPED = Counter(
    "livecart_ws_messages_dropped",
    "Messages a slow viewer lost (comments, likes, host messages, errors while its "
    "socket was backed up)",
)
WS_SLOW_CLOSES = Counter(
    "livecart_ws_slow_closes",
    "Viewers closed with 1008 because they stayed too far behind",
)

# --- reservations and confirms (live/buying.py, live/routes/reservations.py) -----------

RESERVATIONS = Counter(
    "livecart_reservations",
    "Buy attempts by outcome: created, replayed (same key again) or the error code",
    ["outcome"],
)
RESERVE_DURATION = Histogram(
    "livecart_reservation_duration_seconds",
    "Time to decide a buy (HTTP or websocket), Redis script included",
    buckets=FAST_BUCKETS,
)
CONFIRMS = Counter(
    "livecart_confirms",
    "Reservation confirmations by outcome: paid or the error code",
    ["outcome"],
)

# --- HTTP (live/) ------------------------------------------------------------------------

HTTP_DURATION = Histogram(
    "livecart_http_request_duration_seconds",
    "HTTP request time by route template and method",
    ["route", "method"],
    buckets=HTTP_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "livecart_http_requests",
    "HTTP requests by route template, method and status",
    ["route", "method", "status"],
)

# --- Redis ---------------------------------------------------------------------------------

REDIS_ROUNDTRIP = Histogram(
    "livecart_redis_roundtrip_seconds",
    "Round-trip time of single Redis commands sent by the service, by command",
    ["command"],
    buckets=FAST_BUCKETS,
)

# --- order drain (orders/) ---------------------------------------------------------------

ORDERS_DRAINED = Counter(
    "livecart_orders_drained",
    "Order events committed to SQL by the drainers",
)
DRAIN_BATCHES = Counter("livecart_drain_batches", "SQL transactions the drainers committed")
DRAIN_FAILURES = Counter(
    "livecart_drain_failures",
    "Drain errors (a refused SQL batch retried, or a lost Redis connection)",
)
DRAIN_DEAD_LETTERED = Counter(
    "livecart_drain_dead_lettered",
    "Events that could not be applied and went to the dead-letter stream",
)
DRAIN_LAG = Gauge(
    "livecart_drain_lag",
    "Order events in Redis not yet delivered to any drainer (read at scrape time)",
    multiprocess_mode="mostrecent",
)
DRAIN_PENDING = Gauge(
    "livecart_drain_pending",
    "Order events delivered to a drainer and not yet committed (read at scrape time)",
    multiprocess_mode="mostrecent",
)
