"""Signed bearer tokens: `base64url(payload) "." base64url(HMAC-SHA256(payload))`.

The payload is compact JSON `{"r": role, "s": subject, "n": name, "e": expiry_s}`. A host
token's subject is its stream id; a viewer token's subject is the viewer id. Verification
is constant-time and rejects anything altered, truncated, expired or of unknown shape.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal

import orjson

Role = Literal["host", "viewer"]
ROLES: frozenset[str] = frozenset({"host", "viewer"})
MAX_TOKEN_LEN = 2048


class TokenError(Exception):
    """The token is missing, malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class Claims:
    role: Role
    subject: str
    name: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("token secret must not be empty")
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def issue(self, role: Role, subject: str, ttl_s: int, name: str = "") -> str:
        claims = {"r": role, "s": subject, "n": name, "e": int(time.time()) + ttl_s}
        payload = orjson.dumps(claims)
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: float | None = None) -> Claims:
        if not token or len(token) > MAX_TOKEN_LEN or token.count(".") != 1:
            raise TokenError("malformed token")
        body, sig = token.split(".")
        try:
            payload = _unb64(body)
            mac = _unb64(sig)
        except (binascii.Error, ValueError):
            raise TokenError("malformed token") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise TokenError("bad signature")
        try:
            claims = orjson.loads(payload)
            role, subject, name, exp = claims["r"], claims["s"], claims["n"], claims["e"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise TokenError("malformed token") from None
        if role not in ROLES or not isinstance(subject, str) or not isinstance(exp, int):
            raise TokenError("malformed token")
        if exp <= (time.time() if now is None else now):
            raise TokenError("token expired")
        return Claims(role=role, subject=subject, name=str(name), expires_at=exp)
