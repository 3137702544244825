"""Random sequences of reserve / confirm / cancel / expire / flash sales against the real
scripts, checked step by step against a plain Python model of the inventory
(hypothesis state machine)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from inventory import keys
from inventory.catalog import Catalog, Product
from inventory.reservations import ReservationError, Reservations
from inventory.sales import SaleError, Sales

STOCK = {"A": 6, "B": 4}
LIMIT = {"A": 3, "B": None}
VIEWERS = ["v0", "v1", "v2"]
KEYS = ["k0", "k1", "k2", "k3"]
REDIS_URL = ""  # set by the test before the machine runs


@dataclass
class Res:
    id: str
    viewer: str
    sku: str
    qty: int
    sale_id: str | None
    status: str = "reserved"
    overdue: bool = False


@dataclass
class Sale:
    id: str
    units: int
    limit: int | None


class InventoryMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = Redis.from_url(REDIS_URL, decode_responses=True)
        self.inv = Reservations(self.redis, ttl_s=600, buys_per_window=0)
        self.sales = Sales(self.redis)
        self.sid = f"s_{secrets.token_hex(8)}"
        self.stock = dict(STOCK)  # what a viewer can buy now
        self.aside = {sku: 0 for sku in STOCK}  # regular units held during a sale
        self.sale: dict[str, Sale | None] = {sku: None for sku in STOCK}
        self.counts: dict[tuple[str, str, str | None], int] = {}
        self.idem: dict[tuple[str, str], Res] = {}
        self.by_id: dict[str, Res] = {}

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.redis.aclose())
        self.loop.close()

    @initialize()
    def products(self) -> None:
        catalog = Catalog(self.redis)
        for sku, stock in STOCK.items():
            self.run(catalog.add(Product(self.sid, sku, sku, 100, stock, LIMIT[sku], 0)))

    def end_sale(self, sku: str) -> None:
        self.stock[sku] += self.aside[sku]
        self.aside[sku] = 0
        self.sale[sku] = None

    def give_back(self, r: Res, status: str) -> None:
        r.status = status
        running = self.sale[r.sku]
        if running is not None and running.id != r.sale_id:
            self.aside[r.sku] += r.qty
        else:
            self.stock[r.sku] += r.qty
        self.counts[(r.viewer, r.sku, r.sale_id)] -= r.qty

    @rule(
        target=reservations,
        viewer=st.sampled_from(VIEWERS),
        sku=st.sampled_from(["A", "B", "Z"]),
        qty=st.integers(1, 4),
        key=st.sampled_from(KEYS),
    )
    def reserve(self, viewer: str, sku: str, qty: int, key: str) -> str:
        try:
            out = self.run(self.inv.reserve(self.sid, viewer, sku, qty, key))
            got, rid = ("created" if out.created else "existing"), out.reservation["id"]
            ended = out.ended_sale
        except ReservationError as exc:
            got, rid, ended = exc.code, "", exc.ended_sale
        known = self.idem.get((viewer, key))
        if known is not None:
            same = known.sku == sku and known.qty == qty
            assert got == ("existing" if same else "idempotency_conflict")
            assert not same or rid == known.id
            return known.id
        if sku not in STOCK:
            assert got == "unknown_sku"
            return "r_missing"
        sale = self.sale[sku]
        sale_id = sale.id if sale else None
        limit = sale.limit if sale else LIMIT[sku]
        held = self.counts.get((viewer, sku, sale_id), 0)
        if limit is not None and held + qty > limit:
            expected = "limit_exceeded"
        elif self.stock[sku] < qty:
            expected = "sold_out"
        else:
            expected = "created"
        assert got == expected, (got, expected)
        if got != "created":
            assert ended is None
            return "r_missing"
        assert out.reservation["sale_id"] == sale_id
        r = Res(rid, viewer, sku, qty, sale_id)
        self.idem[(viewer, key)] = self.by_id[rid] = r
        self.stock[sku] -= qty
        self.counts[(viewer, sku, sale_id)] = held + qty
        if sale is not None and self.stock[sku] == 0:  # the last sale unit ends the sale
            assert ended is not None and ended["reason"] == "sold_out"
            assert ended["sold"] == sale.units
            self.end_sale(sku)
        else:
            assert ended is None
        return rid

    def outcome(self, call) -> str:  # type: ignore[no-untyped-def]
        try:
            return self.run(call).reservation["status"]
        except ReservationError as exc:
            return exc.code

    @rule(rid=reservations, other=st.booleans())
    def confirm(self, rid: str, other: bool) -> None:
        r = self.by_id.get(rid)
        viewer = "intruder" if other or r is None else r.viewer
        got = self.outcome(self.inv.confirm(rid, viewer))
        if r is None:
            assert got == "not_found"
        elif other:
            assert got == "forbidden"
        elif r.status == "reserved" and r.overdue:
            assert got == "expired"
            self.give_back(r, "expired")
        else:
            if r.status == "reserved":
                r.status = "paid"
            assert got == r.status

    @rule(rid=reservations)
    def cancel(self, rid: str) -> None:
        r = self.by_id.get(rid)
        got = self.outcome(self.inv.cancel(rid, r.viewer if r else "v0"))
        if r is None:
            assert got == "not_found"
        elif r.status == "reserved":
            self.give_back(r, "expired" if r.overdue else "cancelled")
            assert got == r.status
        else:
            assert got == r.status

    @rule(rid=consumes(reservations))
    def time_runs_out(self, rid: str) -> None:
        """The reservation's TTL passes (its expiry is moved into the past)."""
        r = self.by_id.get(rid)
        if r is None or r.status != "reserved":
            return
        raw = orjson.loads(self.run(self.redis.hget(keys.reservations(self.sid), rid)))
        raw["expires_at"] = 1
        self.run(self.redis.hset(keys.reservations(self.sid), rid, orjson.dumps(raw)))
        self.run(self.redis.zadd(keys.expiry(self.sid), {rid: 1}))
        r.overdue = True

    @rule()
    def sweep(self) -> None:
        skus, _ = self.run(self.inv.expire_due(self.sid))
        expected = set()
        for r in self.by_id.values():
            if r.status == "reserved" and r.overdue:
                self.give_back(r, "expired")
                expected.add(r.sku)
        assert set(skus) == expected

    @rule(
        sku=st.sampled_from(["A", "B"]),
        cap=st.integers(1, 5),
        limit=st.none() | st.integers(1, 2),
    )
    def start_sale(self, sku: str, cap: int, limit: int | None) -> None:
        try:
            started = self.run(self.sales.start(self.sid, sku, 10, cap, limit, 600))
            got = "started"
        except SaleError as exc:
            got = exc.code
        if self.sale[sku] is not None:
            assert got == "sale_active"
        elif self.stock[sku] == 0:
            assert got == "sold_out"
        else:
            assert got == "started"
            units = min(cap, self.stock[sku])
            assert started.sale["stock"] == units
            self.aside[sku] = self.stock[sku] - units
            self.stock[sku] = units
            self.sale[sku] = Sale(started.sale["id"], units, limit)

    @rule(sku=st.sampled_from(["A", "B"]))
    def end_sale_now(self, sku: str) -> None:
        ended = self.run(self.sales.end(self.sid, sku, reason="stream_ended", now=True))
        sale = self.sale[sku]
        assert (ended is None) == (sale is None)
        if sale is not None:
            assert ended is not None and ended["id"] == sale.id
            assert ended["sold"] == sale.units - self.stock[sku]
            self.end_sale(sku)

    @invariant()
    def books_balance(self) -> None:
        stock = self.run(self.redis.hgetall(keys.stock(self.sid)))
        if not stock:
            return  # before the products are added
        assert {k: int(v) for k, v in stock.items()} == self.stock
        aside = self.run(self.redis.hgetall(keys.held(self.sid)))
        assert {k: int(v) for k, v in aside.items()} == {
            sku: n for sku, n in self.aside.items() if self.sale[sku] is not None
        }
        for sku, initial in STOCK.items():
            open_units = sum(
                r.qty
                for r in self.by_id.values()
                if r.sku == sku and r.status in ("reserved", "paid")
            )
            assert self.stock[sku] + self.aside[sku] + open_units == initial
            assert self.stock[sku] >= 0
        counts = self.run(self.redis.hgetall(keys.counts(self.sid)))
        expected = {
            "\n".join(p for p in (v, s, sale) if p): n
            for (v, s, sale), n in self.counts.items()
            if n > 0
        }
        assert {k: int(v) for k, v in counts.items()} == expected


@pytest.mark.heavy  # thousands of script calls back to back
@pytest.mark.slow
def test_inventory_matches_model(redis_url: str) -> None:
    global REDIS_URL
    REDIS_URL = redis_url
    run_state_machine_as_test(
        InventoryMachine,
        settings=settings(
            max_examples=80,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
