"""Signed bearer tokens: `base64url(payload) "." base64url(HMAC-SHA256(base64url(payload)))`.

The payload is compact JSON `{"r": role, "s": subject, "n": name, "e": expiry_s}`. A host
token's subject is its stream id; a viewer token's subject is the viewer id.

Signing and the constant-time check are itsdangerous' `Signer` (HMAC-SHA256 over the
encoded payload, as JWS does). On top of it, only the canonical encoding of a token
verifies: unpadded base64url, nothing outside its alphabet, no stray bits in the last
character. Python's decoder accepts all of those variants of one token (it discards
unknown characters and ignores padding and stray bits), so without this check one
signed token would have many spellings that all verify.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Literal

import orjson
from itsdangerous import BadData, BadSignature, Signer
from itsdangerous.encoding import base64_decode, base64_encode

Role = Literal["host", "viewer"]
ROLES: frozenset[str] = frozenset({"host", "viewer"})
MAX_TOKEN_LEN = 2048
# Versions the key: tokens signed under another scheme never verify here.
KEY_CONTEXT = b"livecart bearer token v1"
# The payload, then an HMAC-SHA256 (32 bytes: 43 characters unpadded).
SHAPE = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}")
# The characters that may end an unpadded base64 text of length 2 or 3 (mod 4): those
# whose unused low bits are zero.
LAST_CHAR = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
# Tokens that verified, with their claims: a viewer's every buy carries the same token,
# and a lookup costs a fraction of the HMAC and decoding. Only the exact string that
# verified is found (a forged one never enters); expiry is checked on every use.
VERIFIED_CACHE_SIZE = 4096


class TokenError(Exception):
    """The token is missing, malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class Claims:
    role: Role
    subject: str
    name: str
    expires_at: int


def _canonical(part: bytes) -> bool:
    rem = len(part) % 4
    if rem == 1:
        return False
    return rem == 0 or part[-1] in LAST_CHAR[rem]


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("token secret must not be empty")
        # Derived once here: itsdangerous would otherwise derive it on every call.
        key = hmac.new(secret, KEY_CONTEXT, hashlib.sha256).digest()
        self._signer = Signer(key, key_derivation="none", digest_method=hashlib.sha256)
        self._verified: dict[str, Claims] = {}

    def issue(
        self, role: Role, subject: str, ttl_s: int, name: str = "", now: float | None = None
    ) -> str:
        issued = int(time.time() if now is None else now)
        payload = orjson.dumps({"r": role, "s": subject, "n": name, "e": issued + ttl_s})
        return self._signer.sign(base64_encode(payload)).decode()

    def verify(self, token: str, now: float | None = None) -> Claims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            self._verified[token] = claims
        if claims.expires_at <= (time.time() if now is None else now):
            raise TokenError("token expired")
        return claims

    def _verify(self, token: str) -> Claims:
        """The signature and shape checks; expiry is the caller's."""
        if not token or len(token) > MAX_TOKEN_LEN or not token.isascii():
            raise TokenError("malformed token")
        raw = token.encode()
        if SHAPE.fullmatch(raw) is None:
            raise TokenError("malformed token")
        body, _, sig = raw.partition(b".")
        if not (_canonical(body) and _canonical(sig)):
            raise TokenError("malformed token")
        try:
            self._signer.unsign(raw)
        except BadSignature:
            raise TokenError("bad signature") from None
        try:
            claims = orjson.loads(base64_decode(body))
            role, subject, name, exp = claims["r"], claims["s"], claims["n"], claims["e"]
        except (orjson.JSONDecodeError, KeyError, TypeError, BadData):
            raise TokenError("malformed token") from None
        if role not in ROLES or not isinstance(subject, str) or not isinstance(exp, int):
            raise TokenError("malformed token")
        return Claims(role=role, subject=subject, name=str(name), expires_at=exp)
