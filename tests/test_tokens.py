"""Signed tokens: what verifies and what is refused."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from live.tokens import TokenError, TokenSigner

signer = TokenSigner(b"k" * 32)


def test_round_trip_keeps_role_subject_name() -> None:
    token = signer.issue("viewer", "v_1", 60, name="Bo")
    claims = signer.verify(token)
    assert (claims.role, claims.subject, claims.name) == ("viewer", "v_1", "Bo")
    assert claims.expires_at > time.time()


def test_expired_token_is_refused() -> None:
    token = signer.issue("host", "s_1", 60)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, now=time.time() + 61)


def test_token_from_another_secret_is_refused() -> None:
    token = TokenSigner(b"other").issue("host", "s_1", 60)
    with pytest.raises(TokenError, match="signature"):
        signer.verify(token)


def test_altered_payload_is_refused() -> None:
    token = signer.issue("viewer", "v_1", 60)
    body, sig = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["r"] = "host"  # a viewer trying to become a host
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    with pytest.raises(TokenError):
        signer.verify(f"{forged}.{sig}")


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "!!!.???", "x" * 5000, "e30.e30"])
def test_malformed_tokens_are_refused(junk: str) -> None:
    with pytest.raises(TokenError):
        signer.verify(junk)
