"""Host moderation of the chat against two real `live serve` processes sharing one
Redis: banned words, mutes, deleting comments (once, broadcast to every viewer), and
that only this stream's host may do any of it."""

from __future__ import annotations

import httpx
import pytest
from helpers.api import host_says, new_stream, new_viewer
from helpers.chat import comments_until, error_code, recv_comment, say
from helpers.ws import close_all, collect_until, join, recv_type

# The chat modules share one pair of processes (tests/conftest.py: chat_pair).
pytestmark = pytest.mark.xdist_group("chat")


async def test_banned_words_are_rejected_case_insensitively(
    chat_pair, chat_api, chat_stream
) -> None:
    a, b = chat_pair
    r = await chat_api.put(
        f"/api/streams/{chat_stream.id}/banned-words",
        json={"words": ["Scam", "fake"]},
        headers=chat_stream.auth,
    )
    assert r.status_code == 200, r.text
    assert r.json()["words"] == ["fake", "scam"]
    _, token = await new_viewer(chat_api)
    viewer = await join(b, chat_stream.id, token)
    watcher = await join(a, chat_stream.id)
    await say(viewer, "this is a SCAMMY deal")
    assert await error_code(viewer) == "comment_rejected"
    await say(viewer, "genuine leather")
    msg = await recv_type(watcher, "comment")
    assert msg["data"]["text"] == "genuine leather"
    # Clearing the list lets the word through again.
    r = await chat_api.put(
        f"/api/streams/{chat_stream.id}/banned-words", json={"words": []}, headers=chat_stream.auth
    )
    assert r.status_code == 200 and r.json()["words"] == []
    await say(viewer, "not a scam")
    assert (await recv_type(watcher, "comment"))["data"]["text"] == "not a scam"
    await close_all(viewer, watcher)


async def test_host_mute_and_unmute(chat_pair, chat_api, chat_stream) -> None:
    a, b = chat_pair
    vid, token = await new_viewer(chat_api, "Loud")
    viewer = await join(a, chat_stream.id, token)
    watcher = await join(b, chat_stream.id)
    r = await chat_api.post(
        f"/api/streams/{chat_stream.id}/mutes", json={"viewer_id": vid}, headers=chat_stream.auth
    )
    assert r.status_code == 201, r.text
    r = await chat_api.get(f"/api/streams/{chat_stream.id}/mutes", headers=chat_stream.auth)
    assert r.json()["viewer_ids"] == [vid]
    await say(viewer, "muted words")
    assert await error_code(viewer) == "muted"
    seq = await host_says(chat_api, chat_stream, "marker")
    assert await comments_until(watcher, seq) == []
    r = await chat_api.delete(
        f"/api/streams/{chat_stream.id}/mutes/{vid}", headers=chat_stream.auth
    )
    assert r.status_code == 200, r.text
    r = await chat_api.delete(
        f"/api/streams/{chat_stream.id}/mutes/{vid}", headers=chat_stream.auth
    )
    assert r.status_code == 404
    await say(viewer, "back again")
    assert (await recv_type(watcher, "comment"))["data"]["text"] == "back again"
    await close_all(viewer, watcher)


async def test_host_delete_broadcasts_comment_deleted(chat_pair, chat_api, chat_stream) -> None:
    a, b = chat_pair
    _, token = await new_viewer(chat_api)
    viewer = await join(a, chat_stream.id, token)
    watchers = [await join(a, chat_stream.id), await join(b, chat_stream.id)]
    await say(viewer, "rude remark")
    comment = await recv_type(viewer, "comment")
    cid = comment["data"]["id"]
    r = await chat_api.delete(
        f"/api/streams/{chat_stream.id}/comments/{cid}", headers=chat_stream.auth
    )
    assert r.status_code == 200, r.text
    for ws in [viewer, *watchers]:
        msg = await recv_type(ws, "comment.deleted")
        assert msg["data"] == {"id": cid}
        assert msg["seq"] > comment["seq"]
    await close_all(viewer, *watchers)


async def test_moderation_endpoints_need_this_streams_host(
    chat_pair, chat_api, chat_stream
) -> None:
    other = await new_stream(chat_api, "Other show")
    _, viewer_token = await new_viewer(chat_api)
    viewer_auth = {"Authorization": f"Bearer {viewer_token}"}
    calls = [
        ("DELETE", f"/api/streams/{chat_stream.id}/comments/c_1", None),
        ("POST", f"/api/streams/{chat_stream.id}/mutes", {"viewer_id": "v_1"}),
        ("GET", f"/api/streams/{chat_stream.id}/mutes", None),
        ("DELETE", f"/api/streams/{chat_stream.id}/mutes/v_1", None),
        ("PUT", f"/api/streams/{chat_stream.id}/banned-words", {"words": ["x"]}),
        ("GET", f"/api/streams/{chat_stream.id}/banned-words", None),
    ]
    for method, path, body in calls:
        r = await chat_api.request(method, path, json=body)
        assert r.status_code == 401, (method, path, r.text)
        for headers in (viewer_auth, other.auth):
            r = await chat_api.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"] == "forbidden"
    # Nothing above took effect.
    r = await chat_api.get(f"/api/streams/{chat_stream.id}/banned-words", headers=chat_stream.auth)
    assert r.json()["words"] == []


async def test_deleting_an_unknown_comment_is_404_and_twice_is_idempotent(
    chat_pair, chat_api, chat_stream
) -> None:
    a, b = chat_pair
    other = await new_stream(chat_api, "Other show")
    _, token = await new_viewer(chat_api)
    viewer = await join(a, chat_stream.id, token)
    watcher = await join(b, chat_stream.id)
    await say(viewer, "delete me")
    cid = (await recv_comment(viewer, "delete me"))["data"]["id"]
    # Never posted anywhere, or posted in another stream: 404 in the API's error shape.
    for sid, comment_id, auth in [
        (chat_stream.id, "c_0000000000000000", chat_stream.auth),
        (other.id, cid, other.auth),
    ]:
        r = await chat_api.delete(f"/api/streams/{sid}/comments/{comment_id}", headers=auth)
        assert r.status_code == 404, r.text
        assert r.json() == {"error": "unknown_comment", "detail": r.json()["detail"]}
        assert comment_id in r.json()["detail"]
    r = await chat_api.delete(
        f"/api/streams/{chat_stream.id}/comments/{cid}", headers=chat_stream.auth
    )
    assert r.status_code == 200, r.text
    first = r.json()
    assert first == {"id": cid, "deleted": True, "seq": first["seq"]}
    # Again (through the other process): the same answer, and nothing broadcast twice.
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as api_b:
        r = await api_b.delete(
            f"/api/streams/{chat_stream.id}/comments/{cid}", headers=chat_stream.auth
        )
    assert r.status_code == 200, r.text
    assert r.json() == first
    marker = await host_says(chat_api, chat_stream, "marker")
    got = await collect_until(watcher, marker)
    deleted = [m for m in got if m["type"] == "comment.deleted"]
    assert [(m["seq"], m["data"]) for m in deleted] == [(first["seq"], {"id": cid})]
    await close_all(viewer, watcher)
