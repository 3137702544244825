"""Group buys and referrals in the load test.

- `GroupBuyUser` (`--group-share` of the users; 0 by default): signs up (referred, with
  `--referred-share`), then again and again opens a group of the run's group buy
  (`--open-share`) or joins one another group buyer of this process opened, by its
  share code, and pays for its unit after a moment. `group_full`, `group_closed`,
  `already_member` and `sold_out` are normal answers of a busy group buy, reported
  under their own names, not as failures.
- Referred viewers: with `--referred-share`, every signing-up viewer and buyer (all
  user classes) carries a referral code of one of a few promoters each process signs up
  (two levels: the second promoter was brought by the first), so their paid orders
  earn commission at `--commission` rates.

The master (or the single local process) offers the group buy on the stream's first
product and sets the rates at test start; `python -m loadtest.check` then runs
`live reconcile`, which checks every group and the commission ledger as well.
"""

from __future__ import annotations

import logging
import random
import uuid
from typing import Any

import gevent
import requests
from gevent.lock import Semaphore
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtest import shared

log = logging.getLogger("loadtest")

# Answers that a busy group buy gives; not failures.
REFUSALS = {"group_full", "group_closed", "already_member", "sold_out"}
MAX_KNOWN_GROUPS = 200
PROMOTERS = 3


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    parser.add_argument(
        "--group-share",
        type=float,
        default=0.0,
        help="fraction of users who open and join group buys",
    )
    parser.add_argument("--group-size", type=int, default=3, help="members a group needs")
    parser.add_argument("--group-window", type=int, default=60, help="seconds a group runs")
    parser.add_argument(
        "--open-share",
        type=float,
        default=0.3,
        help="chance a group buyer opens a new group rather than joining one",
    )
    parser.add_argument(
        "--referred-share",
        type=float,
        default=0.0,
        help="fraction of sign-ups that come with a referral code",
    )
    parser.add_argument(
        "--commission",
        default="1000,300",
        help="level1_bps,level2_bps set on the stream at test start",
    )


class _Social:
    """Per-process: the promoters' codes and the groups opened here, by share code."""

    def __init__(self) -> None:
        self.lock = Semaphore()
        self.codes: list[str] | None = None
        self.open_codes: list[str] = []


def _state(env: Environment) -> _Social:
    state = getattr(env, "livecart_social", None)
    if state is None:
        state = _Social()
        env.livecart_social = state  # type: ignore[attr-defined]
    return state


def _promoter_codes(env: Environment) -> list[str]:
    """A few promoters of this process, each with its link; the second one was brought
    by the first, so their referrals earn at both levels."""
    state = _state(env)
    with state.lock:
        if state.codes is None:
            info = shared.run_info(env)
            http = requests.Session()
            codes: list[str] = []
            for n in range(PROMOTERS):
                body: dict[str, Any] = {"name": f"promoter-{n}"}
                if codes:
                    body["ref"] = codes[0]
                r = http.post(f"{info.url}/api/viewers", json=body, timeout=30)
                r.raise_for_status()
                token = r.json()["token"]
                r = http.post(
                    f"{info.url}/api/streams/{info.stream_id}/referral-links",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
                r.raise_for_status()
                codes.append(r.json()["code"])
            state.codes = codes
        return state.codes


def signup_ref(env: Environment) -> dict[str, str]:
    """Extra sign-up fields: a referral code for `--referred-share` of the viewers."""
    opts = env.parsed_options
    if opts is None or random.random() >= opts.referred_share:
        return {}
    return {"ref": random.choice(_promoter_codes(env))}


@events.test_start.add_listener
def offer_group_buy(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    opts = environment.parsed_options
    info = shared.shared(environment).info
    if info is None or opts is None or not info.skus:
        return
    auth = {"Authorization": f"Bearer {info.host_token}"}
    if opts.referred_share > 0:
        level1, level2 = (int(x) for x in opts.commission.split(","))
        requests.put(
            f"{info.url}/api/streams/{info.stream_id}/commission",
            headers=auth,
            timeout=30,
            json={"level1_bps": level1, "level2_bps": level2},
        ).raise_for_status()
    if opts.group_share > 0:
        r = requests.post(
            f"{info.url}/api/streams/{info.stream_id}/group-buys",
            headers=auth,
            timeout=30,
            json={
                "sku": info.skus[0],
                "group_price_cents": 1499,
                "group_size": opts.group_size,
                "window_s": opts.group_window,
            },
        )
        r.raise_for_status()
        log.info("group buy %s offered on %s", r.json()["id"], info.skus[0])


class GroupBuyUser(FastHttpUser):
    # Set from --group-share at init (locustfile.split_audience); non-zero here, since
    # Locust leaves out classes that have no weight when it loads the locustfile.
    weight = 1
    max_retries = 1

    def wait_time(self) -> float:
        return random.uniform(0.5, 2.0)

    def on_start(self) -> None:
        self.info = shared.run_info(self.environment)
        self.opts = self.environment.parsed_options
        self.group_buy_id = ""
        with self.client.post(
            "/api/viewers",
            name="/api/viewers (group buyer)",
            json={"name": f"grouper-{random.randrange(10**6)}", **signup_ref(self.environment)},
            catch_response=True,
        ) as r:
            if r.status_code != 201:
                r.failure(f"sign-up answered {r.status_code}")
                self.auth: dict[str, str] = {}
                return
            self.auth = {"Authorization": f"Bearer {r.json()['token']}"}

    def _find_group_buy(self) -> bool:
        if self.group_buy_id:
            return True
        r = self.client.get(
            f"/api/streams/{self.info.stream_id}/group-buys", name="/api/streams/[id]/group-buys"
        )
        if r.status_code == 200:
            active = [gb for gb in r.json()["group_buys"] if gb["status"] == "active"]
            if active:
                self.group_buy_id = active[0]["id"]
        return bool(self.group_buy_id)

    @task
    def take_part(self) -> None:
        if not self.auth or not self._find_group_buy():
            return
        state = _state(self.environment)
        key = uuid.uuid4().hex
        if state.open_codes and random.random() >= self.opts.open_share:
            code = random.choice(state.open_codes)
            path, name = f"/api/groups/{code}/join", "/api/groups/[code]/join"
        else:
            code = ""
            path, name = (
                f"/api/group-buys/{self.group_buy_id}/groups",
                "/api/group-buys/[id]/groups",
            )
        with self.client.post(
            path, json={"key": key}, headers=self.auth, name=name, catch_response=True
        ) as r:
            if r.status_code not in (200, 201):
                error = _error(r)
                if error in REFUSALS:
                    r.success()
                    self.environment.events.request.fire(
                        request_type="GROUP",
                        name=f"refused {error}",
                        response_time=0,
                        response_length=0,
                        exception=None,
                        context={},
                    )
                    if (
                        code
                        and error in ("group_full", "group_closed")
                        and code in state.open_codes
                    ):
                        state.open_codes.remove(code)
                else:
                    r.failure(f"{r.status_code} {error}")
                return
            body = r.json()
        if not code and body["needed"] > 0:
            state.open_codes.append(body["share_code"])
            del state.open_codes[:-MAX_KNOWN_GROUPS]
        gevent.sleep(random.uniform(0.2, 2.0))  # checkout
        rid = body["reservation"]["id"]
        with self.client.post(
            f"/api/reservations/{rid}/confirm",
            headers=self.auth,
            name="/api/reservations/[id]/confirm (group)",
            catch_response=True,
        ) as r:
            # A group that failed meanwhile (window over) refuses a late payment.
            if r.status_code in (409, 410) and _error(r) in ("group_closed", "expired"):
                r.success()


def _error(response: Any) -> str:
    try:
        return str(response.json().get("error"))
    except Exception:
        return f"HTTP {response.status_code}"
