"""Websocket limits over raw frames: fragmented messages, invalid UTF-8, the ping and
resume budgets, the closing handshake (RFC 6455 7.1.1) and clients that leave during
the handshake."""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import ServiceProcess, service_env
from limits_helpers import RawWs, closed_within, raw_connect, tracebacks
from websockets.frames import Close, Frame, Opcode

BUDGET = 3
CLOSE_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def env(redis_url: str, sqlite_url: str) -> dict[str, str]:
    return service_env(
        redis_url,
        sqlite_url,
        LIVE_WS_RESUMES_PER_MIN=str(BUDGET),
        LIVE_WS_PINGS_PER_MIN=str(BUDGET),
        LIVE_WS_CLOSE_TIMEOUT_S=str(CLOSE_TIMEOUT_S),
    )


@pytest.fixture(scope="module")
def svc(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = ServiceProcess(env=env).start(tmp_path_factory.mktemp("limits-ws"))
    yield service
    service.stop()
    assert tracebacks(service) == []


def setup_stream(svc: ServiceProcess) -> tuple[str, dict[str, str], str]:
    """A live stream (id, host auth) and a viewer token."""
    r = httpx.post(svc.url + "/api/streams", json={"title": "ws", "host_name": "Ann"})
    body = r.json()
    v = httpx.post(svc.url + "/api/viewers", json={"name": "Bo"}).json()
    return body["id"], {"Authorization": f"Bearer {body['host_token']}"}, v["token"]


def joined(svc: ServiceProcess, sid: str, token: str) -> RawWs:
    ws = RawWs(svc, f"/ws/streams/{sid}?token={token}")
    assert ws.status == 101
    hello = orjson.loads(ws.recv_data().data)
    assert hello["type"] == "hello"
    return ws


def messages(ws: RawWs, seconds: float) -> list[Frame]:
    """Every frame that arrives within `seconds`."""
    out: list[Frame] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = ws.recv(left)
        except AssertionError:  # nothing more in time
            break
        if frame is None:
            break
        out.append(frame)
    return out


def of_type(frames: list[Frame], kind: str) -> list[dict]:
    out = []
    for f in frames:
        if f.opcode is Opcode.TEXT:
            msg = orjson.loads(f.data)
            if msg["type"] == kind:
                out.append(msg)
    return out


def wait_for(ws: RawWs, kind: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = ws.recv_data(max(0.1, deadline - time.monotonic()))
        assert frame.opcode is not Opcode.CLOSE, Close.parse(frame.data)
        msg = orjson.loads(frame.data)
        if msg["type"] == kind:
            return msg


def close_code(frame: Frame | None) -> int:
    assert frame is not None and frame.opcode is Opcode.CLOSE, frame
    return Close.parse(frame.data).code


def next_close(ws: RawWs, timeout: float = 10) -> Frame:
    while True:
        frame = ws.recv(timeout)
        assert frame is not None, "TCP closed before a Close frame"
        if frame.opcode is Opcode.CLOSE:
            return frame


# --- fragments and UTF-8 -------------------------------------------------------------


def test_fragmented_messages_are_reassembled(svc: ServiceProcess) -> None:
    sid, _, token = setup_stream(svc)
    ws = joined(svc, sid, token)
    text = '{"type":"comment","text":"h\u00e9llo fragments"}'.encode()
    cut = text.index("\u00e9".encode()) + 1  # inside the two bytes of "é"
    ws.send(Opcode.TEXT, text[:10], fin=False)
    ws.send(Opcode.PING, b"between")  # control frames may come between fragments
    ws.send(Opcode.CONT, text[10:cut], fin=False)
    ws.send(Opcode.CONT, text[cut:], fin=True)
    comment = wait_for(ws, "comment")
    assert comment["data"]["text"] == "h\u00e9llo fragments"
    ws.send(Opcode.TEXT, b'{"type":"pi', fin=False)
    ws.send(Opcode.CONT, b'ng"}', fin=True)
    assert wait_for(ws, "pong")["type"] == "pong"
    ws.close()


def test_a_fragmented_message_over_64_kib_closes_1009(svc: ServiceProcess) -> None:
    sid, _, token = setup_stream(svc)
    ws = joined(svc, sid, token)
    part = b"x" * 40_000  # each fragment is fine, the message is not
    ws.send(Opcode.TEXT, part, fin=False)
    ws.send(Opcode.CONT, part, fin=True)
    assert close_code(next_close(ws)) == 1009
    ws.close()


@pytest.mark.parametrize(
    "payloads",
    [
        [b'{"type":"comment","text":"\xff\xfe"}'],
        [b'{"type":"comment","text":"\xc3'],  # a truncated sequence at the very end
        [b'{"type":"ping","x":"\xed\xa0\x80"}'],  # a UTF-16 surrogate, not UTF-8
    ],
)
def test_invalid_utf8_in_a_text_message_closes_1007(
    svc: ServiceProcess, payloads: list[bytes]
) -> None:
    sid, _, token = setup_stream(svc)
    ws = joined(svc, sid, token)
    for p in payloads:
        ws.send(Opcode.TEXT, p)
    assert close_code(next_close(ws)) == 1007
    ws.close()


def test_binary_frames_are_not_utf8_checked(svc: ServiceProcess) -> None:
    sid, _, token = setup_stream(svc)
    ws = RawWs(svc, f"/ws/streams/{sid}?token={token}", protocol="live.msgpack")
    assert ws.status == 101
    ws.recv_data()  # hello
    ws.send(Opcode.BINARY, b"\xff\xfe")  # not msgpack either: an error message, no close
    frame = ws.recv_data()
    assert frame.opcode is Opcode.BINARY
    ws.close()


# --- budgets -------------------------------------------------------------------------


def test_resume_requests_are_limited_per_socket(svc: ServiceProcess) -> None:
    sid, host, token = setup_stream(svc)
    httpx.post(svc.url + f"/api/streams/{sid}/messages", json={"text": "hi"}, headers=host)
    ws = joined(svc, sid, token)
    for _ in range(BUDGET):  # each allowed resume sends the history again
        ws.send(Opcode.TEXT, b'{"type":"resume","after":0}')
        assert wait_for(ws, "host.message")["data"]["text"] == "hi"
    for _ in range(2):
        ws.send(Opcode.TEXT, b'{"type":"resume","after":0}')
    frames = messages(ws, 1.5)
    errors = [m["data"]["code"] for m in of_type(frames, "error")]
    assert errors == ["rate_limited", "rate_limited"], errors
    assert of_type(frames, "host.message") == []  # nothing re-sent over the budget
    # Another socket has its own budget.
    other = joined(svc, sid, token)
    other.send(Opcode.TEXT, b'{"type":"resume","after":0}')
    assert of_type(messages(other, 1.0), "error") == []
    ws.close()
    other.close()


def test_ping_messages_and_ping_frames_share_a_budget(svc: ServiceProcess) -> None:
    sid, _, token = setup_stream(svc)
    ws = joined(svc, sid, token)
    for _ in range(BUDGET + 2):
        ws.send(Opcode.TEXT, b'{"type":"ping"}')
    frames = messages(ws, 1.0)
    assert len(of_type(frames, "pong")) == BUDGET
    assert [m["data"]["code"] for m in of_type(frames, "error")] == ["rate_limited"] * 2
    ws.close()

    ws = joined(svc, sid, token)
    for i in range(BUDGET + 3):
        ws.send(Opcode.PING, b"p%d" % i)
    pongs = [f.data for f in messages(ws, 1.0) if f.opcode is Opcode.PONG]
    assert pongs == [b"p%d" % i for i in range(BUDGET)]  # the rest unanswered
    ws.send(Opcode.TEXT, b'{"type":"comment","text":"still here"}')
    assert wait_for(ws, "comment")["data"]["text"] == "still here"  # not closed for it
    ws.close()


# --- the closing handshake -----------------------------------------------------------


def test_on_stream_end_the_server_waits_for_the_clients_close(svc: ServiceProcess) -> None:
    sid, host, token = setup_stream(svc)
    ws = joined(svc, sid, token)
    r = httpx.post(svc.url + f"/api/streams/{sid}/end", headers=host)
    assert r.status_code == 200
    assert wait_for(ws, "stream.ended")["type"] == "stream.ended"
    assert close_code(next_close(ws)) == 1000
    # The TCP connection stays open for our Close...
    assert closed_within(ws.sock, 0.5) is None
    ws.send_close(1000)
    # ...and the server closes it as soon as it has it.
    took = closed_within(ws.sock, CLOSE_TIMEOUT_S + 5)
    assert took is not None and took < 1.0, took
    ws.close()


def test_a_peer_that_never_answers_close_is_dropped_after_the_timeout(
    svc: ServiceProcess,
) -> None:
    sid, host, token = setup_stream(svc)
    ws = joined(svc, sid, token)
    httpx.post(svc.url + f"/api/streams/{sid}/end", headers=host)
    assert close_code(next_close(ws)) == 1000
    start = time.monotonic()
    took = closed_within(ws.sock, CLOSE_TIMEOUT_S + 5)
    assert took is not None
    assert CLOSE_TIMEOUT_S * 0.7 <= time.monotonic() - start <= CLOSE_TIMEOUT_S + 3
    ws.close()


def test_after_1007_the_server_lets_the_peer_read_its_close(svc: ServiceProcess) -> None:
    sid, _, token = setup_stream(svc)
    ws = joined(svc, sid, token)
    ws.send(Opcode.TEXT, b"\xff")
    assert close_code(next_close(ws)) == 1007
    ws.send_close(1000)  # discarded by the server (the connection failed), not an error
    took = closed_within(ws.sock, CLOSE_TIMEOUT_S + 5)
    assert took is not None
    ws.close()


def test_shutdown_closes_1001_and_waits_for_the_clients_close(
    env: dict[str, str], tmp_path: Path
) -> None:
    service = ServiceProcess(env=env).start(tmp_path)
    try:
        sid, _, token = setup_stream(service)
        ws = joined(service, sid, token)
        stopping = threading.Thread(target=service.stop, args=(signal.SIGTERM,))
        stopping.start()
        assert close_code(next_close(ws)) == 1001
        ws.send_close(1001)
        assert closed_within(ws.sock, 5) is not None
        stopping.join(30)
        assert service.proc is not None and service.proc.returncode == 0
        assert tracebacks(service) == []
    finally:
        service.stop()


# --- clients leaving early -------------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_leaving_mid_handshake_leave_no_traceback(svc: ServiceProcess) -> None:
    sid, _, token = setup_stream(svc)
    before = len(tracebacks(svc))
    upgrade = (
        f"GET /ws/streams/{sid}?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    for i in range(30):
        sock = raw_connect(svc)
        if i % 3 == 0:
            sock.sendall(upgrade[: len(upgrade) // 2])  # half a request
        elif i % 3 == 1:
            sock.sendall(upgrade)  # the whole request, gone before the answer
        else:
            sock.sendall(upgrade + b"\x81")  # and the first byte of a frame
        if i % 2:
            _reset(sock)
        else:
            sock.close()
    time.sleep(0.5)  # admission runs after the client left: give it time to fail
    ws = joined(svc, sid, token)  # still serving
    ws.close()
    assert len(tracebacks(svc)) == before
