"""ViewerUser: joins the stream over the websocket, reads everything, comments and likes."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from locust import task
from locust.contrib.fasthttp import FastHttpUser

from loadtest import shared, social
from loadtest.wsclient import LiveSocket, ws_url

COMMENTS = [
    "love it",
    "how much?",
    "what sizes?",
    "just bought one",
    "🔥🔥🔥",
    "hello from Lyon",
    "is it waterproof?",
    "can you show the back?",
    "restock please",
    "wow",
]


class ViewerUser(FastHttpUser):
    """A viewer: signs up, watches, comments and likes at a human pace, reconnects if dropped."""

    weight = 80  # set from --buyer-share at init
    socket: LiveSocket | None = None
    # The server closes idle keep-alive connections; a request racing that close is sent
    # again on a new connection, as a browser does. Reservations carry an idempotency key
    # and a repeated sale is refused, so a retry cannot inflate what is checked.
    max_retries = 1

    def wait_time(self) -> float:
        # Exponential gaps: actions of many viewers arrive like independent events.
        return random.expovariate(1.0 / max(0.05, self.environment.parsed_options.chat_every))

    def on_start(self) -> None:
        self.info = shared.run_info(self.environment)
        self.opts = self.environment.parsed_options
        self.viewer_id = ""
        self.next_comment_at = 0.0
        signup: dict[str, str] = {"name": f"viewer-{random.randrange(10**6)}"}
        if self.opts.admin_key:
            # A platform mints its users' viewers by their own id: one per simulated user.
            signup["external_id"] = f"loadtest-{uuid.uuid4().hex}"
        with self.client.post(
            "/api/viewers",
            json={**signup, **social.signup_ref(self.environment)},
            headers=shared.admin_headers(self.opts.admin_key),
            name="/api/viewers",
            catch_response=True,
        ) as r:
            if r.status_code != 201:
                r.failure(f"sign-up answered {r.status_code}")
                self.token = ""
            else:
                body = r.json()
                self.viewer_id, self.token = body["viewer_id"], body["token"]
        self.socket = LiveSocket(
            self.environment,
            ws_url(self.info.url, self.info.stream_id, self.token),
            self.on_message,
            sample=self.opts.latency_sample,
        )
        self.socket.connect()

    def on_stop(self) -> None:
        if self.socket is not None:
            self.socket.close()

    def on_message(self, msg: dict[str, Any]) -> None:
        """Hook for subclasses; runs in the reader greenlet."""
        if msg.get("type") == "error" and not self.owns_error(msg):
            data = msg.get("data") or {}
            assert self.socket is not None
            self.socket.fire(
                f"error {data.get('code')}",
                0,
                exc=RuntimeError(f"{data.get('code')}: {data.get('detail')}"),
            )

    def owns_error(self, msg: dict[str, Any]) -> bool:
        return False

    def ensure_connected(self) -> bool:
        sock = self.socket
        if sock is None or sock.ended:
            return False
        return sock.connected or sock.connect()

    @task
    def act(self) -> None:
        self.step()

    def step(self) -> None:
        """One action between two waits; a buyer does more."""
        self.chat()

    def chat(self) -> None:
        if not self.ensure_connected() or self.socket is None:
            return
        now = time.monotonic()
        # A person does not comment twice a second; the server's default limit is 5 per 5 s.
        if random.random() < self.opts.comment_share and now >= self.next_comment_at:
            self.next_comment_at = now + self.opts.min_comment_gap
            self.socket.send({"type": "comment", "text": random.choice(COMMENTS)})
        else:
            self.socket.send({"type": "like"})
