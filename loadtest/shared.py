"""What every Locust process of a run shares: the stream under test and the viewers' tallies.

The master (or the single local process) creates the stream in `test_start`, before any
user spawns, and hands it to workers as a custom message that a worker requests on its
first need, so workers that join late learn it too. Tallies flow the other way: each
process adds an absolute snapshot of its counters to every stats report, and the master
keeps the newest per worker and writes the merged result to `--run-file`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import gevent
import requests
from gevent.event import Event
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

log = logging.getLogger("loadtest")

RUN_MSG = "livecart_run"
NEED_RUN_MSG = "livecart_need_run"
REPORT_KEY = "livecart_tally"


@dataclass(slots=True)
class RunInfo:
    url: str
    stream_id: str
    host_token: str
    skus: list[str]
    started_at: float  # epoch seconds; the host's schedule counts from here

    def seconds_in(self) -> float:
        return time.time() - self.started_at


@dataclass(slots=True)
class Tally:
    """Counters of one process; the master sums those of its workers."""

    viewers: int = 0  # viewer sessions (connections that said hello)
    messages: int = 0  # server messages received
    lost: int = 0  # broadcast messages missing from the seq sequence
    viewers_with_loss: int = 0
    max_lost_per_viewer: int = 0
    not_recovered: int = 0  # resumes answered with hello recovered=false
    disconnects: int = 0
    buys: int = 0
    reserved: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # sold_out, limit_exceeded, ...
    confirmed: list[str] = field(default_factory=list)  # order ids
    abandoned: int = 0
    sales: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> sku, stock

    def merge(self, other: dict[str, Any]) -> None:
        for name in (
            "viewers",
            "messages",
            "lost",
            "viewers_with_loss",
            "not_recovered",
            "disconnects",
            "buys",
            "reserved",
            "abandoned",
        ):
            setattr(self, name, getattr(self, name) + int(other.get(name, 0)))
        self.max_lost_per_viewer = max(
            self.max_lost_per_viewer, other.get("max_lost_per_viewer", 0)
        )
        for code, n in other.get("refused", {}).items():
            self.refused[code] = self.refused.get(code, 0) + n
        self.confirmed.extend(other.get("confirmed", []))
        self.sales.update(other.get("sales", {}))


class Shared:
    """Per-process state, kept on the Locust environment."""

    def __init__(self) -> None:
        self.info: RunInfo | None = None
        self.ready = Event()
        self.asked = False
        self.tally = Tally()
        self.worker_tallies: dict[str, dict[str, Any]] = {}
        self.reported_at: dict[str, float] = {}
        self.live_losses: dict[int, int] = {}  # id(viewer) -> lost so far, for max/with-loss


def shared(env: Environment) -> Shared:
    state = getattr(env, "livecart", None)
    if state is None:
        state = Shared()
        env.livecart = state  # type: ignore[attr-defined]
    return state


def run_info(env: Environment, timeout_s: float = 60.0) -> RunInfo:
    """The stream under test; on a worker, asks the master once and waits for the answer."""
    state = shared(env)
    if not state.ready.is_set() and isinstance(env.runner, WorkerRunner) and not state.asked:
        state.asked = True
        env.runner.send_message(NEED_RUN_MSG, None)
    if not state.ready.wait(timeout_s) or state.info is None:
        raise RuntimeError("the stream under test never became known (is the master up?)")
    return state.info


# --- setup --------------------------------------------------------------------------


def admin_headers(admin_key: str) -> dict[str, str]:
    """What a deployment running with LIVE_ADMIN_KEY needs to create streams and viewers."""
    return {"Authorization": f"Bearer {admin_key}"} if admin_key else {}


def create_stream(url: str, products: int, stock: int, admin_key: str = "") -> RunInfo:
    """A fresh stream with `products` products of `stock` units, the first one pinned."""
    http = requests.Session()
    r = http.post(
        f"{url}/api/streams",
        json={"title": "Load test", "host_name": "Locust"},
        headers=admin_headers(admin_key),
        timeout=30,
    )
    r.raise_for_status()
    body = r.json()
    sid, token = body["id"], body["host_token"]
    auth = {"Authorization": f"Bearer {token}"}
    skus = []
    for i in range(products):
        sku = f"lt-{i + 1}"
        r = http.post(
            f"{url}/api/streams/{sid}/products",
            headers=auth,
            timeout=30,
            json={
                "sku": sku,
                "title": f"Load test item {i + 1}",
                "price_cents": 1999,
                "stock": stock,
            },
        )
        r.raise_for_status()
        skus.append(sku)
    if skus:
        http.post(
            f"{url}/api/streams/{sid}/pin", headers=auth, json={"sku": skus[0]}, timeout=30
        ).raise_for_status()
    log.info("created stream %s with %d products", sid, len(skus))
    return RunInfo(url=url, stream_id=sid, host_token=token, skus=skus, started_at=time.time())


def existing_stream(url: str, sid: str, token: str) -> RunInfo:
    r = requests.get(f"{url}/api/streams/{sid}", timeout=30)
    r.raise_for_status()
    skus = [p["sku"] for p in r.json().get("products", [])]
    return RunInfo(url=url, stream_id=sid, host_token=token, skus=skus, started_at=time.time())


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # workers ask the master (run_info)
    state = shared(environment)
    opts = environment.parsed_options
    url = (environment.host or "").rstrip("/")
    if not url:
        raise RuntimeError("set --host to the service URL, e.g. http://127.0.0.1:8000")
    if opts.stream_id:
        if not opts.host_token:
            raise RuntimeError("--stream-id needs --host-token")
        state.info = existing_stream(url, opts.stream_id, opts.host_token)
    else:
        state.info = create_stream(url, opts.products, opts.stock, opts.admin_key)
    state.ready.set()
    write_run_file(environment)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.send_message(RUN_MSG, asdict(state.info))


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):

        def got_run(msg: Any, **_: Any) -> None:
            state = shared(environment)
            state.info = RunInfo(**msg.data)
            state.ready.set()

        runner.register_message(RUN_MSG, got_run)
    elif isinstance(runner, MasterRunner):

        def need_run(msg: Any, **_: Any) -> None:
            info = shared(environment).info
            if info is not None:
                runner.send_message(RUN_MSG, asdict(info), client_id=msg.node_id)

        runner.register_message(NEED_RUN_MSG, need_run)


# --- tallies ------------------------------------------------------------------------


def snapshot(env: Environment) -> dict[str, Any]:
    state = shared(env)
    out = asdict(state.tally)
    losses = state.live_losses.values()
    out["viewers_with_loss"] += sum(1 for n in losses if n)
    out["max_lost_per_viewer"] = max([out["max_lost_per_viewer"], *losses])
    out["lost"] += sum(losses)
    return out


@events.report_to_master.add_listener
def on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    if _ENV:
        data[REPORT_KEY] = snapshot(_ENV[0])


@events.worker_report.add_listener
def on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    if REPORT_KEY in data and _ENV:
        state = shared(_ENV[0])
        state.worker_tallies[client_id] = data[REPORT_KEY]
        state.reported_at[client_id] = time.time()


# These two events do not pass the environment; a Locust process has exactly one.
_ENV: list[Environment] = []


@events.init.add_listener
def remember_env(environment: Environment, **_: Any) -> None:
    _ENV.append(environment)


def viewer_loss(env: Environment, key: int, lost: int) -> None:
    """The running loss of a connected viewer (kept live so reports include it)."""
    shared(env).live_losses[key] = lost


def viewer_done(env: Environment, key: int) -> None:
    state = shared(env)
    lost = state.live_losses.pop(key, 0)
    state.tally.lost += lost
    state.tally.viewers_with_loss += 1 if lost else 0
    state.tally.max_lost_per_viewer = max(state.tally.max_lost_per_viewer, lost)


def merged_tally(env: Environment) -> dict[str, Any]:
    state = shared(env)
    if isinstance(env.runner, MasterRunner):
        total = Tally()
        for t in state.worker_tallies.values():
            total.merge(t)
        return asdict(total)
    return snapshot(env)


def write_run_file(env: Environment) -> None:
    state = shared(env)
    if state.info is None or isinstance(env.runner, WorkerRunner):
        return
    path = env.parsed_options.run_file
    if not path:
        return
    body = {"run": asdict(state.info), "tally": merged_tally(env), "written_at": time.time()}
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(body, f, indent=1)


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        wait_for_last_reports(environment)
    write_run_file(environment)


@events.quitting.add_listener
def on_quitting(environment: Environment, **_: Any) -> None:
    write_run_file(environment)


def wait_for_last_reports(env: Environment, timeout_s: float = 4.0) -> None:
    """Wait until every worker has reported once more (they report every 3 s).

    On a `-t` run the master fires test_stop once the workers' users have stopped, so
    these reports hold everything. A shape run that ends by returning None makes Locust
    quit at once and lose the workers' last reports: LiveShape therefore stops every user
    first (its wind-down) and ends the test after that.
    """
    state = shared(env)
    since = time.time()
    deadline = since + timeout_s
    while time.time() < deadline:
        if all(t > since for t in state.reported_at.values()):
            return
        gevent.sleep(0.2)
    log.warning("some workers sent no report after the stop; the run file may undercount")
