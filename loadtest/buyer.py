"""BuyerUser: a viewer who buys during flash sales, then confirms (pays) or abandons."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import gevent
from gevent.event import AsyncResult
from gevent.queue import Queue

from loadtest import shared
from loadtest.viewer import ViewerUser

BUY_TIMEOUT_S = 15.0
POLL_S = 0.5
# Answers that mean "no stock for you", which a flash sale gives most of its audience:
# reported under their own names, not as failures.
REFUSALS = {"sold_out", "limit_exceeded", "sale_not_active", "sale_ended"}


class BuyerUser(ViewerUser):
    weight = 20

    def on_start(self) -> None:
        self.sales: Queue = Queue()  # skus on sale that this buyer has not tried yet
        self.tried: set[str] = set()
        self.reply: AsyncResult | None = None
        self.reply_key = ""
        super().on_start()

    # --- reader side ---------------------------------------------------------------

    def on_message(self, msg: dict[str, Any]) -> None:
        type_ = msg.get("type")
        data = msg.get("data") or {}
        if type_ == "sale.started":
            self._on_sale(data)
        elif type_ == "hello":
            for sale in data.get("sales") or data.get("active_sales") or []:
                self._on_sale(sale)
        elif type_ == "reservation":
            # Only the answer to the buy in flight: the service also tells the socket
            # about reservations made, paid or cancelled over HTTP (the buyer's own).
            if self.reply is not None and data.get("key") == self.reply_key:
                self.reply.set(msg)
            return
        super().on_message(msg)

    def owns_error(self, msg: dict[str, Any]) -> bool:
        if self.reply is not None and not self.reply.ready():
            self.reply.set(msg)
            return True
        return False

    def _on_sale(self, sale: dict[str, Any]) -> None:
        key = str(sale.get("id") or sale.get("sku"))
        if key not in self.tried and sale.get("sku"):
            self.tried.add(key)
            self.sales.put(sale["sku"])

    # --- tasks ---------------------------------------------------------------------

    def wait_time(self) -> float:
        # A buyer watches the banner: it reacts to a sale within about POLL_S, and chats
        # at the viewers' pace (see step).
        return random.uniform(0.5 * POLL_S, 1.5 * POLL_S)

    def step(self) -> None:
        if not self.sales.empty():
            self.buy_next_sale()
        elif random.random() < POLL_S / max(POLL_S, self.opts.chat_every):
            self.chat()

    def buy_next_sale(self) -> None:
        sku = self.sales.get()
        gevent.sleep(random.uniform(0, 1.5))  # a human taps "buy" a moment after the banner
        over = self.opts.buy_over
        if over == "mixed":
            over = random.choice(["ws", "http"])
        reservation = self._buy_ws(sku) if over == "ws" else self._buy_http(sku)
        if reservation is not None:
            gevent.sleep(random.uniform(0.2, 2.0))  # checkout
            self._settle(reservation)

    def _refused(self, code: str) -> None:
        refused = shared.shared(self.environment).tally.refused
        refused[code] = refused.get(code, 0) + 1

    def _buy_ws(self, sku: str) -> dict[str, Any] | None:
        if not self.ensure_connected() or self.socket is None:
            return None
        tally = shared.shared(self.environment).tally
        self.reply = AsyncResult()
        self.reply_key = uuid.uuid4().hex
        t0 = time.perf_counter()
        self.socket.send({"type": "buy", "sku": sku, "qty": 1, "key": self.reply_key})
        tally.buys += 1
        try:
            msg = self.reply.get(timeout=BUY_TIMEOUT_S)
        except gevent.Timeout:
            self.socket.fire("buy", BUY_TIMEOUT_S * 1000, exc=TimeoutError("no answer to buy"))
            return None
        finally:
            self.reply = None
        ms = (time.perf_counter() - t0) * 1000
        data = msg.get("data") or {}
        if msg.get("type") == "reservation":
            self.socket.fire("buy", ms, len(str(data)))
            tally.reserved += 1
            return data
        code = str(data.get("code"))
        if code in REFUSALS:
            self.socket.fire(f"buy refused {code}", ms)
            self._refused(code)
        else:
            self.socket.fire("buy", ms, exc=RuntimeError(f"{code}: {data.get('detail')}"))
        return None

    def _buy_http(self, sku: str) -> dict[str, Any] | None:
        tally = shared.shared(self.environment).tally
        tally.buys += 1
        with self.client.post(
            f"/api/streams/{self.info.stream_id}/reservations",
            json={"sku": sku, "qty": 1, "key": uuid.uuid4().hex},
            headers={"Authorization": f"Bearer {self.token}"},
            name="/api/streams/[id]/reservations",
            catch_response=True,
        ) as r:
            if r.status_code in (200, 201):
                tally.reserved += 1
                return r.json()
            code = _error_code(r)
            if r.status_code == 409 and code in REFUSALS:
                r.success()
                self._refused(code)
            else:
                r.failure(f"{r.status_code} {code}")
        return None

    def _settle(self, reservation: dict[str, Any]) -> None:
        rid = reservation.get("id")
        auth = {"Authorization": f"Bearer {self.token}"}
        tally = shared.shared(self.environment).tally
        if random.random() < self.opts.confirm_ratio:
            with self.client.post(
                f"/api/reservations/{rid}/confirm",
                headers=auth,
                name="/api/reservations/[id]/confirm",
                catch_response=True,
            ) as r:
                if r.status_code == 200:
                    tally.confirmed.append(r.json().get("order_id") or "")
                else:
                    r.failure(f"confirm answered {r.status_code} {_error_code(r)}")
        else:
            with self.client.delete(
                f"/api/reservations/{rid}",
                headers=auth,
                name="/api/reservations/[id] (abandon)",
                catch_response=True,
            ) as r:
                if r.status_code == 200:
                    tally.abandoned += 1
                else:
                    r.failure(f"abandon answered {r.status_code} {_error_code(r)}")


def _error_code(response: Any) -> str:
    if not response.status_code:  # no answer at all: say why
        return repr(getattr(response, "error", None))
    try:
        return str(response.json().get("error"))
    except Exception:
        return "?"
