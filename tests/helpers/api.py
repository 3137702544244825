"""HTTP helpers: a host's stream, a viewer, bearer headers."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class HostedStream:
    id: str
    host_token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.host_token)


async def new_stream(client: httpx.AsyncClient, title: str = "Spring drop") -> HostedStream:
    r = await client.post("/api/streams", json={"title": title, "host_name": "Ann"})
    assert r.status_code == 201, r.text
    body = r.json()
    return HostedStream(id=body["id"], host_token=body["host_token"])


async def new_viewer(client: httpx.AsyncClient, name: str = "Bo") -> tuple[str, str]:
    r = await client.post("/api/viewers", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["viewer_id"], r.json()["token"]


async def host_says(api: httpx.AsyncClient, stream: HostedStream, text: str) -> int:
    """A host message; returns its seq."""
    r = await api.post(f"/api/streams/{stream.id}/messages", json={"text": text},
                       headers=stream.auth)
    assert r.status_code == 202, r.text
    return int(r.json()["seq"])
