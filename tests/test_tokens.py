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
    # Issued two minutes ago for one minute: expired now.
    old = signer.issue("host", "s_1", 60, now=time.time() - 120)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(old)


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


def _same_bytes(a: str, b: str) -> bool:
    """What Python's lenient decoder makes of two spellings of a token part."""
    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    return unb64(a) == unb64(b)


def _respell_last(part: str) -> str:
    """The same bytes with other (unused) low bits in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(part[-1])
    return part[:-1] + alphabet[i + 1]


def test_only_the_canonical_spelling_verifies() -> None:
    # Issued at a fixed time (valid for years) so the token is the same on every run; a
    # name whose payload encoding has unused bits and whose signature has a character
    # that the standard base64 alphabet spells differently.
    def issue(name: str) -> str:
        return signer.issue("viewer", "v_1", 10**9, name=name, now=1_700_000_000)

    token = next(
        t for n in (f"Bo{i}" for i in range(200))
        if len((t := issue(n)).split(".")[0]) % 4 and {"-", "_"} & set(t.split(".")[1])
    )
    body, sig = token.split(".")
    assert signer.verify(token).subject == "v_1"
    variants = {
        "padded signature": f"{body}.{sig}=",
        "padded payload": f"{body}{'=' * (-len(body) % 4) or '===='}.{sig}",
        "stray bits in the signature": f"{body}.{_respell_last(sig)}",
        "stray bits in the payload": f"{_respell_last(body)}.{sig}",
        "a character outside the alphabet": f"{body}.{sig[:10]}!{sig[10:]}",
        "standard base64 alphabet": f"{body}.{sig.replace('-', '+').replace('_', '/')}",
        "whitespace": f"{body}.{sig}\n",
    }
    # Each variant decodes to the signed bytes (so a lenient check would accept it)...
    assert _same_bytes(variants["stray bits in the signature"].split(".")[1], sig)
    assert _same_bytes(variants["stray bits in the payload"].split(".")[0], body)
    for name, variant in variants.items():
        assert variant != token, name
        # ...and each is refused.
        with pytest.raises(TokenError):
            signer.verify(variant)
