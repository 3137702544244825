"""The two identity modes: open demo mode with per-address sign-up limits shared by every
process, and LIVE_ADMIN_KEY mode where a platform mints viewers by `external_id`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import ServiceProcess, service_env, service_pair
from limits_helpers import tracebacks
from redis.asyncio import Redis

ADMIN_KEY = "adm-" + "k" * 28
SIGNUPS = 3


@pytest.fixture(scope="module")
def open_pair(
    redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    env = service_env(redis_url, sqlite_url, LIVE_SIGNUP_PER_MIN=str(SIGNUPS))
    with service_pair(env, tmp_path_factory.mktemp("open-mode")) as pair:
        yield pair
    for svc in pair:
        assert tracebacks(svc) == []


@pytest.fixture(scope="module")
def admin_pair(
    redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    env = service_env(
        redis_url, sqlite_url, LIVE_ADMIN_KEY=ADMIN_KEY, LIVE_SIGNUP_PER_MIN="1"
    )
    with service_pair(env, tmp_path_factory.mktemp("admin-mode")) as pair:
        yield pair


async def _reset_counters(redis: Redis) -> None:
    keys = [k async for k in redis.scan_iter(match="live:signup:*")]
    if keys:
        await redis.delete(*keys)


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and isinstance(body["detail"], str) and body["detail"]


async def test_open_mode_limits_sign_ups_per_address_across_processes(
    open_pair: tuple[ServiceProcess, ServiceProcess], redis: Redis
) -> None:
    await _reset_counters(redis)
    a, b = open_pair
    async with httpx.AsyncClient(timeout=10) as http:
        for i in range(SIGNUPS):  # spread over both processes: one shared count
            svc = (a, b)[i % 2]
            r = await http.post(svc.url + "/api/viewers", json={"name": f"v{i}"})
            assert r.status_code == 201, r.text
        for svc in (a, b):
            r = await http.post(svc.url + "/api/viewers", json={"name": "one too many"})
            _error(r, 429, "rate_limited")
            assert 1 <= int(r.headers["retry-after"]) <= 60
        # Streams are counted on their own.
        for i in range(SIGNUPS):
            r = await http.post(
                (a, b)[i % 2].url + "/api/streams", json={"title": "t", "host_name": "h"}
            )
            assert r.status_code == 201, r.text
        r = await http.post(b.url + "/api/streams", json={"title": "t", "host_name": "h"})
        _error(r, 429, "rate_limited")
        assert "retry-after" in r.headers


async def test_open_mode_refuses_external_ids(
    open_pair: tuple[ServiceProcess, ServiceProcess], redis: Redis
) -> None:
    await _reset_counters(redis)
    async with httpx.AsyncClient(base_url=open_pair[0].url, timeout=10) as http:
        r = await http.post("/api/viewers", json={"name": "Mallory", "external_id": "alice"})
        _error(r, 400, "invalid_body")
        assert "external_id" in r.json()["detail"]


async def test_admin_mode_needs_the_key(admin_pair: tuple[ServiceProcess, ServiceProcess]) -> None:
    a, _ = admin_pair
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {ADMIN_KEY}x"},
            {"Authorization": f"Basic {ADMIN_KEY}"},
        ):
            r = await http.post(
                "/api/viewers", json={"name": "x", "external_id": "u1"}, headers=headers
            )
            _error(r, 401, "unauthorized")
            r = await http.post(
                "/api/streams", json={"title": "t", "host_name": "h"}, headers=headers
            )
            _error(r, 401, "unauthorized")
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        r = await http.post("/api/viewers", json={"name": "x"}, headers=admin)
        _error(r, 400, "invalid_body")
        assert "external_id" in r.json()["detail"]


async def test_admin_mode_maps_an_external_id_to_one_viewer_and_is_never_limited(
    admin_pair: tuple[ServiceProcess, ServiceProcess],
) -> None:
    a, b = admin_pair
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(timeout=10) as http:
        # LIVE_SIGNUP_PER_MIN=1, yet the admin key signs up as many as it likes.
        ids = []
        for i, svc in enumerate((a, b, a, b)):
            r = await http.post(
                svc.url + "/api/viewers",
                json={"name": f"Alice {i}", "external_id": "alice@platform"},
                headers=admin,
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["viewer_id"])
            assert r.json()["name"] == f"Alice {i}"
        assert len(set(ids)) == 1
        r = await http.post(
            a.url + "/api/viewers", json={"name": "Bob", "external_id": "bob"}, headers=admin
        )
        assert r.json()["viewer_id"] != ids[0]
        tokens = []
        for svc in (a, b):
            r = await http.post(
                svc.url + "/api/viewers",
                json={"name": "Alice", "external_id": "alice@platform"},
                headers=admin,
            )
            tokens.append(r.json()["token"])
        # The per-user limit counts the person, whatever token she uses.
        r = await http.post(
            a.url + "/api/streams", json={"title": "drop", "host_name": "Ann"}, headers=admin
        )
        assert r.status_code == 201, r.text
        sid, host = r.json()["id"], {"Authorization": f"Bearer {r.json()['host_token']}"}
        r = await http.post(
            a.url + f"/api/streams/{sid}/products",
            json={"sku": "one", "title": "One each", "price_cents": 100, "stock": 10,
                  "per_user_limit": 1},
            headers=host,
        )
        assert r.status_code == 201, r.text
        first = await http.post(
            a.url + f"/api/streams/{sid}/reservations",
            json={"sku": "one", "qty": 1, "key": "k1"},
            headers={"Authorization": f"Bearer {tokens[0]}"},
        )
        assert first.status_code == 201, first.text
        second = await http.post(
            b.url + f"/api/streams/{sid}/reservations",
            json={"sku": "one", "qty": 1, "key": "k2"},
            headers={"Authorization": f"Bearer {tokens[1]}"},
        )
        _error(second, 409, "limit_exceeded")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIVE_ADMIN_KEY", "short"),
        ("LIVE_ADMIN_KEY", "a key with spaces in it"),
        ("LIVE_SIGNUP_PER_MIN", "-1"),
        ("LIVE_SIGNUP_PER_MIN", "many"),
        ("LIVE_MAX_PRODUCTS", "0"),
        ("LIVE_SETTLED_RETENTION_S", "soon"),
        ("LIVE_HTTP_MAX_HEADER_BYTES", "10"),
        ("LIVE_HTTP_HEADER_TIMEOUT_S", "nan"),
        ("LIVE_HTTP_BODY_TIMEOUT_S", "-3"),
        ("LIVE_HTTP_KEEPALIVE_S", "x"),
        ("LIVE_DRAIN_LAG_REPORT_MS", "5"),
        ("LIVE_WS_RESUMES_PER_MIN", "-1"),
        ("LIVE_WS_PINGS_PER_MIN", "1.5"),
        ("LIVE_WS_CLOSE_TIMEOUT_S", "0"),
    ],
)
def test_a_bad_limit_setting_stops_live_serve_with_exit_2(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from live.cli import main

    monkeypatch.setenv("LIVE_SECRET", "x" * 32)
    monkeypatch.setenv(name, value)
    # Refused before anything starts (no server, no embedded Redis).
    assert main(["serve", "--port", "1"]) == 2
    assert name in capsys.readouterr().err
