"""Property-based checks (Hypothesis) over every HTTP route of the app and every
websocket message type: never a 5xx, never a traceback in the service log, and every
API error in the documented shape `{"error", "detail"}`.

The HTTP routes are read from the app itself, so routes added later are fuzzed too."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import msgpack
import orjson
import pytest
from conftest import TEST_SECRET, ServiceProcess, service_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from limits_helpers import tracebacks
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from live.app import create_app
from live.config import Settings

# Fault, load and concurrency runs: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


@pytest.fixture(scope="module")
def svc(
    redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    service = ServiceProcess(env=service_env(redis_url, sqlite_url)).start(
        tmp_path_factory.mktemp("fuzz")
    )
    yield service
    service.stop()
    found = tracebacks(service)
    assert found == [], found[0]


@pytest.fixture(scope="module")
def world(svc: ServiceProcess) -> dict[str, Any]:
    """Real ids and tokens for the fuzzer to mix with garbage."""
    with httpx.Client(base_url=svc.url, timeout=10) as http:
        s = http.post("/api/streams", json={"title": "fuzz", "host_name": "Ann"}).json()
        host = {"Authorization": f"Bearer {s['host_token']}"}
        http.post(
            f"/api/streams/{s['id']}/products",
            json={"sku": "F1", "title": "Fuzz", "price_cents": 100, "stock": 1000},
            headers=host,
        )
        v = http.post("/api/viewers", json={"name": "Fuzzy"}).json()
        r = http.post(
            f"/api/streams/{s['id']}/reservations",
            json={"sku": "F1", "qty": 1, "key": "fuzz-1"},
            headers={"Authorization": f"Bearer {v['token']}"},
        ).json()
        ws_stream = http.post("/api/streams", json={"title": "ws", "host_name": "Ann"}).json()
    return {
        "ws_sid": ws_stream["id"],  # the HTTP fuzzer may end "sid"; this one stays live
        "sid": s["id"],
        "host_token": s["host_token"],
        "viewer_id": v["viewer_id"],
        "viewer_token": v["token"],
        "rid": r["id"],
    }


def routes() -> list[tuple[str, str]]:
    app = create_app(Settings(secret=TEST_SECRET.encode()))
    out = []
    for route in app.routes:
        if isinstance(route, Route):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                out.append((method, route.path))
    return out


ROUTES = routes()
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=15,
)
FIELDS = [
    "title",
    "host_name",
    "name",
    "external_id",
    "sku",
    "price_cents",
    "stock",
    "per_user_limit",
    "text",
    "qty",
    "key",
    "sale_id",
    "duration_s",
    "words",
    "viewer_id",
    "group_price_cents",
    "group_size",
    "window_s",
    "level1_bps",
    "level2_bps",
    "ref",
]
known_bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
garbage_text = st.text(max_size=40)
PRINTABLE = st.characters(min_codepoint=33, max_codepoint=126)


def path_value(name: str, w: dict[str, Any]) -> st.SearchStrategy[str]:
    real = {"sid": w["sid"], "rid": w["rid"], "viewer_id": w["viewer_id"]}.get(name, "c_0")
    return st.one_of(st.just(real), garbage_text.filter(bool), st.sampled_from(["..", "%00"]))


@st.composite
def http_requests(draw: st.DrawFn, w: dict[str, Any]) -> tuple[str, str, dict, dict, bytes | None]:
    method, template = draw(st.sampled_from(ROUTES))
    path = PARAM.sub(lambda m: quote(draw(path_value(m.group(1), w)), safe=""), template)
    query = draw(
        st.dictionaries(
            st.sampled_from(["limit", "cursor", "status", "lang", "token", "x"]) | garbage_text,
            st.one_of(st.sampled_from(["1", "200", "²", "-1", "paid"]), garbage_text),
            max_size=3,
        )
    )
    auth = draw(st.sampled_from(["", "host", "viewer", "garbage", "bearer-garbage"]))
    headers: dict[str, str] = {}
    if auth == "host":
        headers["Authorization"] = f"Bearer {w['host_token']}"
    elif auth == "viewer":
        headers["Authorization"] = f"Bearer {w['viewer_token']}"
    elif auth == "garbage":
        headers["Authorization"] = draw(
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
        )
    elif auth == "bearer-garbage":
        headers["Authorization"] = "Bearer " + draw(
            st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=200)
        )
    kind = draw(st.sampled_from(["none", "known", "json", "bytes"]))
    body: bytes | None = None
    if kind == "known":
        body = json.dumps(draw(known_bodies)).encode()  # stdlib: integers of any size
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    if body is not None and draw(st.booleans()):
        headers["Content-Type"] = "application/json"
    return method, path, query, headers, body


def check_response(r: httpx.Response, path: str) -> None:
    assert r.status_code < 500, (r.status_code, path, r.text[:300])
    if r.status_code >= 400 and (path.startswith("/api/") or path == "/healthz"):
        body = r.json()
        assert isinstance(body, dict) and set(body) >= {"error", "detail"}, body
        assert isinstance(body["error"], str) and isinstance(body["detail"], str), body


def test_http_routes_never_fail(svc: ServiceProcess, world: dict[str, Any]) -> None:
    assert len(ROUTES) >= 20  # the app's routes were found
    with httpx.Client(base_url=svc.url, timeout=10) as http:

        @FUZZ
        @given(http_requests(world))
        def run(req: tuple[str, str, dict, dict, bytes | None]) -> None:
            method, path, query, headers, body = req
            try:
                r = http.request(method, path, params=query, headers=headers, content=body)
            except (OverflowError, ValueError, UnicodeEncodeError):
                return  # nonsense httpx refuses to send (e.g. non-ASCII header)
            except httpx.LocalProtocolError:
                return
            check_response(r, path)

        run()


def test_integers_at_the_edges_are_refused_cleanly(
    svc: ServiceProcess, world: dict[str, Any]
) -> None:
    """The numbers that overflow SQL or Lua, in every numeric field of every body."""
    edges = [2**63, -(2**63) - 1, 2**53 + 1, 10**30, -1, 0, 1.5, 1e308]
    with httpx.Client(base_url=svc.url, timeout=10) as http:
        for method, template in ROUTES:
            if method not in ("POST", "PUT"):
                continue
            path = PARAM.sub(
                lambda m: {"sid": world["sid"], "rid": world["rid"]}.get(m.group(1), "x"),
                template,
            )
            for value in edges:
                for field in (
                    "price_cents",
                    "stock",
                    "per_user_limit",
                    "qty",
                    "duration_s",
                    "group_size",
                    "window_s",
                    "level1_bps",
                ):
                    body = {"sku": "F1", "title": "t", "key": "k", "text": "t", field: value}
                    token = world["viewer_token" if "reserv" in path else "host_token"]
                    r = http.request(
                        method, path, json=body, headers={"Authorization": f"Bearer {token}"}
                    )
                    check_response(r, path)


# --- websocket -----------------------------------------------------------------------

TYPES = ["comment", "like", "buy", "resume", "ping", "unknown", "", "hello"]
ws_message = st.one_of(
    st.builds(
        lambda t, extra: {**extra, "type": t},
        st.sampled_from(TYPES),
        st.dictionaries(
            st.sampled_from(["text", "sku", "qty", "key", "sale_id", "after", "x"]),
            json_values,
            max_size=4,
        ),
    ),
    json_values,
)


def check_server_message(msg: Any) -> None:
    assert isinstance(msg, dict) and set(msg) >= {"type", "seq", "ts", "data"}, msg
    if msg["type"] == "error":
        assert set(msg["data"]) >= {"code", "detail"}, msg
        assert msg["data"]["code"] != "internal", msg


def test_websocket_messages_never_fail(svc: ServiceProcess, world: dict[str, Any]) -> None:
    url = f"{svc.ws_url}/ws/streams/{world['ws_sid']}?token={world['viewer_token']}"

    @settings(FUZZ, max_examples=60)
    @given(
        st.lists(ws_message, min_size=1, max_size=8),
        st.sampled_from(["live.json", "live.msgpack"]),
        st.booleans(),
    )
    def run(msgs: list[Any], protocol: str, raw_text: bool) -> None:
        binary = protocol == "live.msgpack"
        decode = msgpack.unpackb if binary else orjson.loads
        with connect(url, subprotocols=[protocol], open_timeout=10) as ws:  # type: ignore[list-item]
            check_server_message(decode(ws.recv(10)))  # hello
            for m in msgs:
                if binary:
                    try:
                        ws.send(msgpack.packb(m))
                    except (OverflowError, TypeError, ValueError):
                        ws.send(b"\xc1")  # never valid msgpack
                elif raw_text and isinstance(m, str):
                    ws.send(m)  # not JSON at all
                else:
                    ws.send(json.dumps(m))
            ws.send(msgpack.packb({"type": "ping"}) if binary else '{"type":"ping"}')
            while True:
                try:
                    msg = decode(ws.recv(10))
                except ConnectionClosed as exc:
                    assert exc.rcvd is not None and exc.rcvd.code in (1000, 1008), exc
                    return
                check_server_message(msg)
                if msg["type"] == "pong":
                    return

    run()
