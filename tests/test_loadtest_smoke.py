"""The load test itself: Locust runs headless against a real service and the checker reads
the outcome. Locust runs as a subprocess so that gevent's monkey-patching stays out of
pytest's process."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.locust import USERS, LocustRun, assert_a_clean_run, check, run_locust
from helpers.services import ROOT, ServiceProcess, service_env

from loadtest.schedules import SpikeAndDrain, Steady, Surge

# Locust runs keep the CPUs busy.
pytestmark = pytest.mark.heavy

@pytest.fixture(scope="module")
def load_target(
    redis_url: str, deployment_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """`live serve --workers 2`, draining with its own consumer group: a Redis shared with
    other test sessions must not hand this store's order events to their drainers."""
    env = service_env(
        redis_url,
        deployment_database_url,
        LIVE_DRAIN_GROUP=f"lt-{secrets.token_hex(4)}",
        LIVE_LOG_LEVEL="warning",
    )
    svc = ServiceProcess(env=env, args=["--workers", "2"]).start(
        tmp_path_factory.mktemp("load-target")
    )
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def locust_run(load_target: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> LocustRun:
    # 10 s: on a loaded 2-core machine the stream is set up a few seconds into the run and
    # an 8 s run saw a single sale.
    return run_locust(load_target, tmp_path_factory.mktemp("locust"), seconds=10)


@pytest.mark.slow
def test_viewers_connect_receive_and_buy_without_failures(locust_run: LocustRun) -> None:
    assert_a_clean_run(locust_run)


@pytest.mark.slow
def test_run_file_tallies_what_the_viewers_saw(locust_run: LocustRun) -> None:
    tally = json.loads(locust_run.run_file.read_text())["tally"]
    assert tally["viewers"] >= USERS - 1
    assert tally["messages"] >= locust_run.count("WS deliver hello")
    assert tally["reserved"] > 0 and tally["confirmed"], tally
    assert tally["lost"] == 0, tally


@pytest.mark.slow
def test_check_says_the_invariants_held(locust_run: LocustRun) -> None:
    done = check(locust_run)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "HELD" in done.stdout and "FAIL" not in done.stdout, done.stdout


@pytest.mark.slow
def test_check_fails_when_a_confirmed_buy_has_no_order(
    locust_run: LocustRun, tmp_path: Path
) -> None:
    body = json.loads(locust_run.run_file.read_text())
    body["tally"]["confirmed"].append("o_" + "0" * 16)  # a payment the store never saw
    forged = tmp_path / "run.json"
    forged.write_text(json.dumps(body))
    done = check(locust_run, "--run-file", str(forged), "--settle-s", "1", "--no-reconcile")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  every confirmed buy is one paid order" in done.stdout, done.stdout


@pytest.mark.slow
def test_a_master_with_two_workers_runs_the_same_load_and_merges_the_tally(
    load_target: ServiceProcess, tmp_path: Path
) -> None:
    run = run_locust(load_target, tmp_path, seconds=10, workers=2)
    assert_a_clean_run(run)
    # The master's run file adds up what the workers' viewers saw and bought.
    tally = json.loads(run.run_file.read_text())["tally"]
    assert tally["viewers"] >= USERS - 1 and tally["lost"] == 0, tally
    assert tally["reserved"] > 0 and tally["confirmed"], tally
    done = check(run)
    assert done.returncode == 0 and "HELD" in done.stdout, done.stdout + done.stderr


def test_surge_grows_tenfold_in_thirty_seconds() -> None:
    surge = Surge(viewers=100, ramp=50, surge_at=30, factor=10, surge_ramp=30, hold=60)
    assert surge.at(10) == (100, 50)
    users, rate = surge.at(30)  # type: ignore[misc]
    assert users == 1000 and rate == pytest.approx(900 / 30)
    assert surge.at(119) is not None and surge.at(120) is None
    assert surge.end() == 120  # LiveShape stops every user after this, then ends


def test_spike_drains_back_to_the_base_and_steady_ends_on_time() -> None:
    spike = SpikeAndDrain(
        viewers=50, ramp=25, spike_at=10, factor=10, hold=20, drain=30, duration=90
    )
    assert spike.at(5) == (50, 25)
    assert spike.at(10)[0] == 500 and spike.at(10)[1] == pytest.approx(450 / 3)  # type: ignore[index]
    assert spike.at(40) == (50, 15.0)
    assert spike.at(90) is None
    assert Steady(viewers=10, ramp=5, duration=60).at(59) == (10, 5)
    assert Steady(viewers=10, ramp=5, duration=60).at(60) is None


LOSS_SCRIPT = """
import json, sys
from locust.env import Environment
from loadtest.wsclient import LiveSocket

def feed(*messages):
    sock = LiveSocket(Environment(), "ws://unused", lambda msg: None)
    for msg in messages:
        if msg["type"] == "hello" and sock.last_seq is not None:
            sock.resuming = True  # what connect() sets on a reconnect
        sock._track_seq(msg["type"], msg)
    return sock.lost

def hello(seq, recovered=None):
    data = {"seq": seq} if recovered is None else {"seq": seq, "recovered": recovered}
    return {"type": "hello", "seq": seq, "data": data}

def m(seq):
    return {"type": "host.message", "seq": seq, "data": {}}

print(json.dumps({
    # After a reconnect, live 9 overtakes the replay of 7 and 8: nothing is lost.
    "overtaken": feed(hello(5), m(6), hello(8), m(9), m(7), m(8)),
    # 7 never comes, 8 does.
    "one_missing": feed(hello(5), m(6), m(8)),
    # The history lost 7..10: a fresh hello says so.
    "not_recovered": feed(hello(5), m(6), hello(10, recovered=False), m(11)),
}))
"""


def test_losses_count_only_what_never_arrives() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOSS_SCRIPT], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"overtaken": 0, "one_missing": 1, "not_recovered": 4}
