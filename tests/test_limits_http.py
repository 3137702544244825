"""HTTP limits of `live serve`, over raw sockets: the request head cap (431), the head
and body read timeouts, the idle keep-alive close, query validation, and clients that
leave mid-request without a traceback in the log."""

from __future__ import annotations

import base64
import socket
import struct
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from conftest import ServiceProcess, new_stream, service_env
from limits_helpers import closed_within, raw_connect, read_response, tracebacks

HEAD_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def svc(
    redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = service_env(
        redis_url,
        sqlite_url,
        LIVE_HTTP_HEADER_TIMEOUT_S=str(HEAD_TIMEOUT_S),
        LIVE_HTTP_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        LIVE_HTTP_KEEPALIVE_S="",  # the production default, 5 s
    )
    service = ServiceProcess(env=env).start(tmp_path_factory.mktemp("limits-http"))
    yield service
    service.stop()
    assert tracebacks(service) == []


def request_head(extra: bytes = b"", path: str = "/healthz") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_a_head_at_the_cap_is_served_and_over_it_is_431(svc: ServiceProcess) -> None:
    with raw_connect(svc) as sock:
        sock.sendall(request_head(b"X-Pad: " + b"a" * 15_000 + b"\r\n"))
        assert status_of(read_response(sock)) == 200
    with raw_connect(svc) as sock:
        sock.sendall(request_head(b"X-Pad: " + b"a" * 17_000 + b"\r\n"))
        response = read_response(sock)
        assert status_of(response) == 431
        body = orjson.loads(response.partition(b"\r\n\r\n")[2])
        assert body["error"] == "headers_too_large" and body["detail"]
        assert closed_within(sock, 5) is not None
    # Many small headers count together.
    with raw_connect(svc) as sock:
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 60) for i in range(400))
        sock.sendall(request_head(many))
        assert status_of(read_response(sock)) == 431


def test_an_endless_header_is_cut_off_early(svc: ServiceProcess) -> None:
    """A 64 MiB header: the server answers 431 and closes long before it is all sent."""
    with raw_connect(svc) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        chunk = b"a" * 65536
        with pytest.raises(OSError):  # reset or broken pipe once the server has closed
            while sent < 64 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 4 * 1024 * 1024, sent


def test_a_silent_connection_is_dropped_after_the_head_timeout(svc: ServiceProcess) -> None:
    with raw_connect(svc) as sock:
        took = closed_within(sock, HEAD_TIMEOUT_S + 5)
        assert took is not None and took >= HEAD_TIMEOUT_S * 0.8


def test_a_slow_head_is_dropped(svc: ServiceProcess) -> None:
    with raw_connect(svc) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        with pytest.raises(OSError):
            while time.monotonic() - start < HEAD_TIMEOUT_S + 5:
                sock.sendall(b"X-Drip: 1\r\n")  # one header at a time, never the end
                time.sleep(0.2)
        assert time.monotonic() - start < HEAD_TIMEOUT_S + 3


def test_a_slow_body_is_dropped_without_a_traceback(svc: ServiceProcess) -> None:
    before = len(tracebacks(svc))
    with raw_connect(svc) as sock:
        sock.sendall(
            b"POST /api/viewers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"name\":"
        )
        took = closed_within(sock, BODY_TIMEOUT_S + 5)
        assert took is not None and took >= BODY_TIMEOUT_S * 0.8
    assert httpx.get(svc.url + "/healthz").status_code == 200
    assert len(tracebacks(svc)) == before


def test_a_client_leaving_mid_body_leaves_no_traceback(svc: ServiceProcess) -> None:
    before = len(tracebacks(svc))
    for _ in range(5):
        with raw_connect(svc) as sock:
            sock.sendall(
                b"POST /api/streams HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{\"ti"
            )
            time.sleep(0.05)
            # Linger 0: close() resets the connection, as a client that vanishes does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.3)  # let the server notice the resets
    assert httpx.get(svc.url + "/healthz").status_code == 200
    assert len(tracebacks(svc)) == before


def test_an_idle_keep_alive_connection_is_closed_after_5_s(svc: ServiceProcess) -> None:
    with raw_connect(svc) as sock:
        sock.sendall(request_head())
        assert status_of(read_response(sock)) == 200
        took = closed_within(sock, 15)
        assert took is not None and 4.0 <= took <= 9.0, took


def test_keep_alive_serves_several_requests(svc: ServiceProcess) -> None:
    with raw_connect(svc) as sock:
        for _ in range(3):
            sock.sendall(request_head())
            assert status_of(read_response(sock)) == 200
            time.sleep(0.5)


# --- query validation ----------------------------------------------------------------


def _forged(payload: bytes, mac: bytes = b"x" * 16) -> str:
    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).decode().rstrip("=")

    return f"{b64(payload)}.{b64(mac)}"


async def test_orders_query_is_validated(svc: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
        stream = await new_stream(client)
        url = f"/api/streams/{stream.id}/orders"
        bad = [
            ({"limit": "²"}, "limit"),
            ({"limit": "\uff11\uff10"}, "limit"),  # full-width "10"
            ({"limit": "-1"}, "limit"),
            ({"limit": "1e2"}, "limit"),
            ({"limit": " 5"}, "limit"),
            ({"limit": "0005"}, "limit"),
            ({"limit": ""}, "limit"),
            ({"cursor": base64.urlsafe_b64encode(b'[true,"r"]').decode()}, "cursor"),
            ({"cursor": base64.urlsafe_b64encode(b'[9223372036854775808,"r"]').decode()}, "cursor"),
            ({"cursor": _forged(b'[9223372036854775808,"r"]')}, "cursor"),
            ({"cursor": _forged(b'[1,"r"]')}, "cursor"),
            ({"cursor": "é" * 10}, "cursor"),
            ({"cursor": "a" * 5000}, "cursor"),
            ({"cursor": "."}, "cursor"),
            ({"status": "shipped"}, "status"),
        ]
        for params, name in bad:
            r = await client.get(url, params=params, headers=stream.auth)
            assert r.status_code == 400, (params, r.text)
            body = r.json()
            assert body["error"] == "invalid_query", (params, body)
            assert body["detail"].startswith(f"{name}:"), (params, body)
        for limit in ("1", "200", "50"):
            r = await client.get(url, params={"limit": limit}, headers=stream.auth)
            assert r.status_code == 200, r.text
