"""Bearer-token checks for routes: 401 when the token is missing or bad, 403 when it is
valid but for another stream or role."""

from __future__ import annotations

from starlette.requests import Request

from domain.errors import DomainError
from live.tokens import Claims, TokenError, TokenSigner


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise DomainError("unauthorized", "missing bearer token")
    return token.strip()


def claims_of(request: Request) -> Claims:
    signer: TokenSigner = request.app.state.services.signer
    try:
        return signer.verify(bearer_token(request))
    except TokenError as exc:
        raise DomainError("unauthorized", str(exc)) from None


def require_host(request: Request, sid: str) -> Claims:
    claims = claims_of(request)
    if claims.role != "host":
        raise DomainError("forbidden", "this needs the stream's host token")
    if claims.subject != sid:
        raise DomainError("forbidden", "this host token is for another stream")
    return claims


def require_viewer(request: Request) -> Claims:
    claims = claims_of(request)
    if claims.role != "viewer":
        raise DomainError("forbidden", "this needs a viewer token")
    return claims
