"""HostUser: runs the show. Pins products, launches flash sales and talks, on a schedule.

The stream itself is created at test start (loadtest/shared.py) so that viewers on every
worker know it before they spawn; there is exactly one host per run (`fixed_count`).
"""

from __future__ import annotations

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

from loadtest import shared

LINES = [
    "welcome everyone!",
    "look at this colour",
    "only a few left",
    "flash sale soon",
    "thanks for the likes",
    "tell me your size in the chat",
]


class HostUser(FastHttpUser):
    fixed_count = 1
    wait_time = constant(0.5)
    # The server closes idle keep-alive connections; a request racing that close is sent
    # again on a new connection, as a browser does. Reservations carry an idempotency key
    # and a repeated sale is refused, so a retry cannot inflate what is checked.
    max_retries = 1

    def on_start(self) -> None:
        self.info = shared.run_info(self.environment)
        self.opts = self.environment.parsed_options
        self.auth = {"Authorization": f"Bearer {self.info.host_token}"}
        self.sales_done = 0
        self.messages_done = 0
        self.pins_done = 1  # the setup pinned the first product

    def first_sale_at(self) -> float:
        if self.opts.first_sale_at >= 0:
            return float(self.opts.first_sale_at)
        return float(self.opts.surge_at) if self.opts.shape == "surge" else 5.0

    @task
    def follow_schedule(self) -> None:
        t = self.info.seconds_in()
        skus = self.info.skus
        if not skus:
            return
        if t >= self.first_sale_at() + self.sales_done * self.opts.sale_every:
            self.launch_sale(skus[self.sales_done % len(skus)])
            self.sales_done += 1
        if self.opts.pin_every > 0 and t >= self.pins_done * self.opts.pin_every:
            self.pin(skus[self.pins_done % len(skus)])
            self.pins_done += 1
        if self.opts.message_every > 0 and t >= self.messages_done * self.opts.message_every:
            self.say(LINES[self.messages_done % len(LINES)])
            self.messages_done += 1

    def launch_sale(self, sku: str) -> None:
        body = {
            "sku": sku,
            "price_cents": 999,
            "stock": self.opts.sale_stock,
            "per_user_limit": self.opts.sale_limit,
            "duration_s": self.opts.sale_duration,
        }
        with self.client.post(
            f"/api/streams/{self.info.stream_id}/sales",
            json=body,
            headers=self.auth,
            name="/api/streams/[id]/sales (host)",
            catch_response=True,
        ) as r:
            if r.status_code != 201:
                r.failure(f"sale answered {r.status_code}: {r.text[:200]}")
                return
            sale = r.json()
            # The checker holds every sale to its own stock, not just the product's.
            tally = shared.shared(self.environment).tally
            tally.sales[sale["id"]] = {"sku": sku, "stock": int(sale.get("stock", body["stock"]))}

    def pin(self, sku: str) -> None:
        self.client.post(
            f"/api/streams/{self.info.stream_id}/pin",
            json={"sku": sku},
            headers=self.auth,
            name="/api/streams/[id]/pin (host)",
        )

    def say(self, text: str) -> None:
        self.client.post(
            f"/api/streams/{self.info.stream_id}/messages",
            json={"text": text},
            headers=self.auth,
            name="/api/streams/[id]/messages (host)",
        )
