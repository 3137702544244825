"""Did the deployment hold? Run after a load test:

    python -m loadtest.check                      # reads loadtest/out/run.json from the run
    python -m loadtest.check --url URL --stream-id ID --host-token TOKEN

It checks, and prints one line per check with PASS or FAIL:
- no oversell: for every sku, units paid (SQL orders) and reserved never exceed its stock,
  and stock left never goes below zero;
- every buy the load test saw confirmed is exactly one paid order in SQL;
- `live reconcile STREAM_ID` agrees (it needs the deployment's LIVE_REDIS_URL and
  LIVE_DATABASE_URL in the environment; `--no-reconcile` skips it for remote runs);
- messages lost per viewer: the gaps in `seq` that the viewers recorded (reported; a
  failure only beyond `--max-lost-per-viewer`, since the protocol lets a slow viewer lose
  comments and likes).
Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MAX_ORDER_PAGES = 10_000  # 100 a page: a million orders at most, then stop paging


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)
    failed: bool = False

    def check(self, ok: bool, what: str) -> None:
        self.lines.append(f"{'PASS' if ok else 'FAIL'}  {what}")
        self.failed |= not ok

    def note(self, what: str) -> None:
        self.lines.append(f"      {what}")


def fetch_orders(http: httpx.Client, sid: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_ORDER_PAGES):
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        r = http.get(f"/api/streams/{sid}/orders", params=params, headers=auth)
        r.raise_for_status()
        body = r.json()
        page = body if isinstance(body, list) else body.get("orders", body.get("items", []))
        orders.extend(page)
        cursor = (
            None
            if isinstance(body, list)
            else (body.get("next_cursor") or body.get("cursor") or body.get("next"))
        )
        if not cursor or not page:
            break
    return orders


def check_stock(
    out: Outcome,
    state: dict[str, Any],
    orders: list[dict[str, Any]],
    stats: dict[str, Any],
    sales: dict[str, dict[str, Any]],
) -> None:
    """Paid + reserved (SQL, as the drainer recorded them) within the stock, per sku and
    per flash sale; stock left never negative."""
    held_sku: Counter[str] = Counter()
    held_sale: Counter[str] = Counter()
    for o in orders:
        if o.get("status") in ("paid", "reserved"):
            held_sku[o["sku"]] += int(o.get("qty", 1))
            if o.get("sale_id"):
                held_sale[o["sale_id"]] += int(o.get("qty", 1))
    total_stock = 0
    for p in state.get("products", []):
        sku, stock, left = p["sku"], int(p["stock"]), int(p.get("stock_left", 0))
        total_stock += stock
        out.check(
            left >= 0 and held_sku[sku] <= stock,
            f"no oversell of {sku}: stock {stock}, paid + reserved {held_sku[sku]}, left {left}",
        )
    worst = max(sales.items(), key=lambda kv: held_sale[kv[0]] - kv[1]["stock"], default=None)
    over = [sid for sid, sale in sales.items() if held_sale[sid] > int(sale["stock"])]
    if sales and worst is not None:
        out.check(
            not over,
            f"no oversell in {len(sales)} flash sales: {len(over)} oversold; fullest sale "
            f"{worst[0]} sold {held_sale[worst[0]]} of {worst[1]['stock']}",
        )
    paid = stats.get("paid_units", stats.get("paid"))
    reserved = stats.get("reserved_units", stats.get("reserved"))
    if paid is not None and reserved is not None:
        out.check(
            int(paid) + int(reserved) <= total_stock,
            f"stats: units paid {paid} + reserved {reserved} <= stock {total_stock}",
        )


def check_confirmed(out: Outcome, confirmed: list[str], orders: list[dict[str, Any]]) -> None:
    paid_ids = Counter(o.get("order_id") for o in orders if o.get("status") == "paid")
    missing = [oid for oid in confirmed if paid_ids[oid] == 0]
    doubled = [oid for oid in confirmed if paid_ids[oid] > 1]
    out.check(
        not missing and not doubled,
        f"every confirmed buy is one paid order: {len(confirmed)} confirmed, "
        f"{len(missing)} missing, {len(doubled)} duplicated"
        + (f" (e.g. {missing[:3] or doubled[:3]})" if missing or doubled else ""),
    )


def run_reconcile(out: Outcome, sid: str, timeout_s: float) -> None:
    cmd = [sys.executable, "-m", "live.cli", "reconcile", sid]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        out.check(False, f"live reconcile {sid} did not finish in {timeout_s:.0f} s")
        return
    text = (done.stdout + done.stderr).strip()
    out.check(done.returncode == 0, f"live reconcile {sid} (exit {done.returncode})")
    for line in text.splitlines()[-15:]:
        out.note(line)


def check_losses(out: Outcome, tally: dict[str, Any], max_lost: int) -> None:
    viewers = tally.get("viewers", 0)
    out.note(
        f"viewers {viewers}, messages received {tally.get('messages', 0)}, "
        f"disconnects {tally.get('disconnects', 0)}, resumes not recovered "
        f"{tally.get('not_recovered', 0)}"
    )
    lost, worst = tally.get("lost", 0), tally.get("max_lost_per_viewer", 0)
    out.check(
        worst <= max_lost,
        f"messages lost: {lost} in all, {tally.get('viewers_with_loss', 0)} of {viewers} "
        f"viewers lost some, worst viewer lost {worst} (allowed {max_lost})",
    )
    out.note(
        f"buys {tally.get('buys', 0)}, reserved {tally.get('reserved', 0)}, "
        f"refused {tally.get('refused', {})}, confirmed {len(tally.get('confirmed', []))}, "
        f"abandoned {tally.get('abandoned', 0)}"
    )


def read_service(
    url: str, sid: str, auth: dict[str, str], confirmed: list[str], settle_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    with httpx.Client(base_url=url.rstrip("/"), timeout=30) as http:
        # Orders reach SQL through the drainer: wait until every confirmed buy is there.
        deadline = time.monotonic() + settle_s
        while True:
            orders = fetch_orders(http, sid, auth)
            have = {o.get("order_id") for o in orders if o.get("status") == "paid"}
            if all(oid in have for oid in confirmed) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        r = http.get(f"/api/streams/{sid}")
        r.raise_for_status()
        r_stats = http.get(f"/api/streams/{sid}/stats", headers=auth)
        r_stats.raise_for_status()
        return r.json(), orders, r_stats.json()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m loadtest.check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--run-file",
        default="loadtest/out/run.json",
        help="written by the Locust master (--run-file there)",
    )
    ap.add_argument("--url", help="service URL (default: from the run file)")
    ap.add_argument("--stream-id", help="stream to check (default: from the run file)")
    ap.add_argument("--host-token", help="host token (default: from the run file)")
    ap.add_argument(
        "--no-reconcile",
        action="store_true",
        help="skip `live reconcile` (e.g. no access to the deployment's stores)",
    )
    ap.add_argument(
        "--settle-s",
        type=float,
        default=15.0,
        help="how long to wait for the order drainer to catch up",
    )
    ap.add_argument("--max-lost-per-viewer", type=int, default=0)
    args = ap.parse_args(argv)

    run: dict[str, Any] = {}
    tally: dict[str, Any] = {}
    if Path(args.run_file).exists():
        body = json.loads(Path(args.run_file).read_text())
        run, tally = body.get("run", {}), body.get("tally", {})
    url = args.url or run.get("url")
    sid = args.stream_id or run.get("stream_id")
    token = args.host_token or run.get("host_token")
    if not (url and sid and token):
        ap.error("need --url, --stream-id and --host-token (or a run file that has them)")

    out = Outcome()
    auth = {"Authorization": f"Bearer {token}"}
    confirmed = [oid for oid in tally.get("confirmed", []) if oid]
    try:
        state, orders, stats = read_service(url, sid, auth, confirmed, args.settle_s)
    except httpx.HTTPError as exc:
        out.check(False, f"could not read the stream, its orders or stats: {exc}")
        print("\n".join(out.lines))
        print("DID NOT HOLD")
        return 1
    print(f"stream {sid} at {url}: {len(orders)} orders in SQL, stats {stats}")
    check_stock(out, state, orders, stats, tally.get("sales", {}))
    if tally:
        check_confirmed(out, confirmed, orders)
        check_losses(out, tally, args.max_lost_per_viewer)
    else:
        out.note(f"no viewer tallies ({args.run_file} missing): loss and confirm checks skipped")
    if not args.no_reconcile:
        run_reconcile(out, sid, timeout_s=60)
    print("\n".join(out.lines))
    print("HELD" if not out.failed else "DID NOT HOLD")
    return 1 if out.failed else 0


if __name__ == "__main__":
    sys.exit(main())
