"""realtime/wscore.py: the websockets core's per-socket savings change nothing on the wire."""

from __future__ import annotations

import weakref

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.uri import parse_uri

from realtime.budget import Budget
from realtime.messages import SUBPROTOCOLS
from realtime.wscore import ServerCore


def _pair(protocols: list[str] | None) -> tuple[ClientProtocol, ServerCore, Request]:
    client = ClientProtocol(parse_uri("ws://x/ws/streams/s1"), subprotocols=protocols)  # type: ignore[arg-type]
    client.send_request(client.connect())
    server = ServerCore(Budget(60), subprotocols=SUBPROTOCOLS, max_size=65536)  # type: ignore[arg-type]
    server.receive_data(b"".join(client.data_to_send()))
    (request,) = server.events_received()
    assert isinstance(request, Request)
    return client, server, request


def test_frames_parse_after_the_handshake_parser_is_dropped() -> None:
    client, server, request = _pair(["live.msgpack"])
    assert server.drop_handshake_parser()
    assert not server.drop_handshake_parser()  # once only
    response = server.accept(request)
    server.send_response(response)
    assert server.state is State.OPEN and server.subprotocol is SUBPROTOCOLS[1]
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
    kept = weakref.ref(request)
    del request
    assert kept() is None  # the old parser held it for the socket's life
    client.send_binary(b"\x81\xa4type\xa4ping")
    client.send_ping(b"p")
    data = b"".join(client.data_to_send())
    server.receive_data(data[:3])  # a frame split across reads
    assert server.events_received() == []
    server.receive_data(data[3:])
    assert [e.opcode for e in server.events_received()] == [Opcode.BINARY, Opcode.PING]
    assert server.data_to_send()  # the pong
    client.send_close(1000, "bye")
    server.receive_data(b"".join(client.data_to_send()))
    assert server.close_rcvd is not None and server.close_rcvd.code == 1000


def test_a_frame_begun_before_the_101_keeps_the_old_parser() -> None:
    _, server, request = _pair(None)
    server.receive_data(b"\x81\x85")  # a masked text frame's header, nothing more
    assert not server.drop_handshake_parser()
    server.send_response(server.accept(request))
    assert server.subprotocol is None  # none offered: live.json
    server.receive_data(b"abcd" + bytes(b ^ m for b, m in zip(b"hello", b"abcda", strict=True)))
    (frame,) = server.events_received()
    assert frame.opcode is Opcode.TEXT and frame.data == b"hello"


def test_the_id_is_made_on_first_use() -> None:
    _, server, _ = _pair(["live.json"])
    assert "id" not in vars(server)
    assert server.id == server.id
