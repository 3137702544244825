"""`GET /openapi.json`: generated from the routes' own models, and the stock schemathesis
CLI finds nothing against a live service (every check, with host and viewer tokens)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ServiceProcess, service_env
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from live.api import ApiRoute
from live.app import create_app
from live.bodies import read_body
from live.config import Settings
from live.openapi import build_document
from live.routes.streams import NewStream
from live.routes.viewers import NewViewer
from live.schemas import Viewer

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# The drainers of these services read their own consumer group: a service of another
# test on this worker's Redis drains with the default one, and would take their events.
OWN_GROUP = f"orders_t{secrets.token_hex(4)}"

# Host operations are pinned to the test's stream and given its host token (ending a
# stream to one of its own, so the others keep a live stream to work on); viewer
# operations the viewer's token (and one real reservation); the order list an issued
# cursors (a made-up one is 400 by contract, which no schema can tell from a valid one).
# The stateful phase chains positive requests only: with sid and tokens pinned here, a
# "negative" chained request whose only flaws are in those pinned parts is valid.
CONFIG = """
[phases.stateful.generation]
mode = "positive"

[[operations]]
include-path-regex = "^/api/streams/\\\\{sid\\\\}/(?!orders|reservations|end$|referral-links|referrals/bind|commission)"
headers = { Authorization = "Bearer ${HOST_TOKEN}" }
parameters = { sid = "${SID}" }

[[operations]]
include-path = ["/api/group-buys/{gbid}", "/api/orders/{order_id}/refund"]
headers = { Authorization = "Bearer ${HOST_TOKEN}" }

# level1_bps + level2_bps <= 5000 is a rule across two fields that JSON Schema cannot
# state (each field's own range it does): such a pair is a 400 the schema calls valid.
[[operations]]
include-path = "/api/streams/{sid}/commission"
include-method = "PUT"
headers = { Authorization = "Bearer ${HOST_TOKEN}" }
parameters = { sid = "${SID}" }
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

# One document for both identity modes: external_id is refused (400) in open mode, as
# this service runs, and required with LIVE_ADMIN_KEY.
[[operations]]
include-path = "/api/viewers"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "429"]

[[operations]]
include-path = "/api/streams/{sid}/end"
headers = { Authorization = "Bearer ${END_TOKEN}" }
parameters = { sid = "${END_SID}" }

[[operations]]
include-path-regex = "^/api/streams$"
include-method = "GET"
parameters = { cursor = "${DIR_CURSOR}" }

[[operations]]
include-path = "/api/streams/{sid}/orders"
headers = { Authorization = "Bearer ${HOST_TOKEN}" }
parameters = { sid = "${SID}", cursor = "${CURSOR}" }

[[operations]]
include-path-regex = "^/api/(streams/\\\\{sid\\\\}/(reservations|referral-links|referrals/bind)|reservations/|group-buys/\\\\{gbid\\\\}/groups|groups/|me/)"
headers = { Authorization = "Bearer ${VIEWER_TOKEN}" }
parameters = { sid = "${SID}", rid = "${RID}" }
"""  # noqa: E501 (TOML regexes on one line)


def test_every_route_is_documented_from_its_models() -> None:
    app = create_app(Settings(secret=b"x"))
    doc = build_document(app.routes)
    assert doc["openapi"].startswith("3.1")
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/api/") or path in ("/healthz", "/metrics", "/openapi.json"):
            assert isinstance(route, ApiRoute), f"{path} is not documented"
    paths = doc["paths"]
    assert set(paths) >= {"/api/streams", "/api/streams/{sid}/reservations", "/healthz",
                          "/metrics", "/openapi.json", "/api/reservations/{rid}/confirm"}
    create = paths["/api/streams"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewStream"
    }
    components = doc["components"]["schemas"]
    # The very schema pydantic makes of the model the handler validates with.
    assert components["NewStream"]["properties"] == NewStream.model_json_schema()["properties"]
    assert components["Error"]["required"] == ["error", "detail"]
    buy = paths["/api/streams/{sid}/reservations"]["post"]
    assert buy["security"] == [{"viewer": []}]
    assert {"200", "201", "400", "401", "403", "404", "409", "429"} <= set(buy["responses"])
    assert buy["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Error"
    )
    orders = paths["/api/streams/{sid}/orders"]["get"]
    assert {p["name"] for p in orders["parameters"]} == {"sid", "limit", "cursor", "status"}
    assert doc["components"]["securitySchemes"]["host"]["scheme"] == "bearer"


async def test_a_handler_reading_another_body_than_declared_fails_loudly() -> None:
    async def handler(request):  # type: ignore[no-untyped-def]
        body = await read_body(request, NewViewer)  # declared: NewStream
        return JSONResponse({"name": body.name})

    app = Starlette(routes=[ApiRoute("/x", handler, "POST", summary="x", body=NewStream,
                                     ok={200: Viewer})])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(RuntimeError, match="declares body"):
            await client.post("/x", json={"name": "a"})


def _prepare(svc: ServiceProcess) -> dict[str, str]:
    """A stream with a product, a viewer with a reservation, and an issued cursor."""
    c = httpx.Client(base_url=svc.url, timeout=10)
    s = c.post("/api/streams", json={"title": "fuzz", "host_name": "h"}).json()
    host = {"Authorization": f"Bearer {s['host_token']}"}
    r = c.post(f"/api/streams/{s['id']}/products", headers=host,
               json={"sku": "a", "title": "A", "price_cents": 5, "stock": 1000})
    assert r.status_code == 201, r.text
    v = c.post("/api/viewers", json={"name": "v"}).json()
    viewer = {"Authorization": f"Bearer {v['token']}"}
    rids = []
    for key in ("k1", "k2"):
        r = c.post(f"/api/streams/{s['id']}/reservations", headers=viewer,
                   json={"sku": "a", "qty": 1, "key": key})
        assert r.status_code == 201, r.text
        rids.append(r.json()["id"])
    deadline = time.monotonic() + 30
    while True:  # the drainer brings both to SQL, then a page of one has a next cursor
        page = c.get(f"/api/streams/{s['id']}/orders?limit=1", headers=host).json()
        if page["next_cursor"]:
            break
        assert time.monotonic() < deadline, page
        time.sleep(0.1)
    other = c.post("/api/streams", json={"title": "to end", "host_name": "h"}).json()
    directory = c.get("/api/streams?limit=1").json()
    assert directory["next_cursor"], directory
    return {"SID": s["id"], "HOST_TOKEN": s["host_token"], "VIEWER_TOKEN": v["token"],
            "CURSOR": page["next_cursor"], "RID": rids[0],
            "END_SID": other["id"], "END_TOKEN": other["host_token"],
            "DIR_CURSOR": directory["next_cursor"]}


@pytest.mark.slow
def test_schemathesis_finds_nothing(start_service, redis_url: str, tmp_path: Path) -> None:
    assert SCHEMATHESIS.exists() or shutil.which("schemathesis")
    svc: ServiceProcess = start_service(
        service_env(redis_url, f"sqlite+aiosqlite:///{tmp_path}/o.db",
                    LIVE_DRAIN_GROUP=OWN_GROUP)
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {**os.environ, **_prepare(svc)}
    cmd = [
        str(SCHEMATHESIS) if SCHEMATHESIS.exists() else "schemathesis",
        "--config-file", str(config), "run", f"{svc.url}/openapi.json",
        "--checks", "all", "--max-examples", "10", "--max-time", "30",
        "--request-timeout", "10", "--no-color", "--generation-database", "none",
    ]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[out.find("FAILURES"):][:6000] or out[-6000:]
    # Every operation of the document was selected and tested (schemathesis may leave
    # out the document's own operation).
    paths = httpx.get(f"{svc.url}/openapi.json").json()["paths"]
    operations = sum(len(ops) for ops in paths.values())
    selected = re.search(r"Selected: (\d+)/(\d+)", out)
    tested = re.search(r"Tested: (\d+)", out)
    assert selected and tested, out[-3000:]
    assert int(selected.group(1)) == int(selected.group(2)) == int(tested.group(1))
    assert int(tested.group(1)) >= operations - 1, (tested.group(0), operations)
    assert "failures" not in out.split("SUMMARY")[-1], out[-3000:]
    # No 5xx behind the scenes either: the service logged no unhandled error.
    assert "unhandled error" not in svc.log(), svc.log()[-3000:]
