"""Who may create streams and viewers: the two identity modes of the service.

- `LIVE_ADMIN_KEY` unset (open demo mode): anyone may, but each client address only
  `LIVE_SIGNUP_PER_MIN` times a minute for streams and as many for viewers, counted in
  Redis so that every worker and machine shares the count.
- `LIVE_ADMIN_KEY` set: only a request with `Authorization: Bearer ADMIN_KEY` may, and
  viewers are minted for the platform's own user ids (`external_id`), each always mapped
  to the same viewer id, so per-viewer limits count people rather than tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from starlette.requests import Request

from domain.errors import DomainError
from live.services import Services

WINDOW_S = 60


def presents_admin_key(request: Request, admin_key: str | None) -> bool:
    if admin_key is None:
        return False
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time: the comparison must not tell an attacker how much of a guess is right.
    return hmac.compare_digest(token.strip().encode(), admin_key.encode())


def client_bucket(request: Request) -> str:
    """The client's address as the limit counts it: an IPv6 client owns its whole /64,
    so it counts as one."""
    host = request.client.host if request.client else "unknown"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


async def authorize_signup(request: Request, services: Services, kind: str) -> bool:
    """Allow or refuse creating a `kind` ("streams" or "viewers"); True when the request
    carries the admin key."""
    settings = services.settings
    if presents_admin_key(request, settings.admin_key):
        return True
    if settings.admin_key is not None:
        raise DomainError("unauthorized", f"creating {kind} needs the admin key")
    limit = settings.signup_per_min
    if limit > 0:
        key = f"live:signup:{kind}:{client_bucket(request)}"
        async with services.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_S, nx=True)
            pipe.ttl(key)
            count, _, ttl = await pipe.execute()
        if int(count) > limit:
            retry = max(1, int(ttl))
            raise DomainError(
                "rate_limited",
                f"at most {limit} new {kind} a minute from one address; retry in {retry} s",
                retry_after=retry,
            )
    return False


def viewer_id_for(secret: bytes, external_id: str) -> str:
    """The viewer id of a platform user: the same on every worker and machine that
    shares `LIVE_SECRET`, and not guessable from the external id without it."""
    digest = hmac.new(secret, b"viewer-external-id\n" + external_id.encode(), hashlib.sha256)
    return "v_" + digest.hexdigest()[:16]
