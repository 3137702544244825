"""Routes of the pages and their static files.

The pages are plain HTML files with `{{key}}` placeholders filled from the string table
of the chosen language (`static/i18n/LANG.json`, the same table the scripts use, embedded
in the page as JSON data). Static files are served under `/static/VERSION/…`, VERSION a
hash of their content, so they can be cached for good; the pages themselves are
revalidated every time (`no-cache` with an ETag).
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.errors import DomainError

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
LANGS = ("en", "zh")
SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PLACEHOLDER = re.compile(r"\{\{([a-z0-9_.]+)\}\}")

# Nothing from anywhere but this service; no inline script or style; no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # The host console's URL carries its token in the fragment: never leak the URL.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
TYPES = {".js": "text/javascript", ".css": "text/css", ".json": "application/json",
         ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _load_assets() -> tuple[str, dict[str, Asset]]:
    assets: dict[str, Asset] = {}
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(STATIC).as_posix()
        body = path.read_bytes()
        digest.update(rel.encode() + b"\0" + body)
        media = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        assets[rel] = Asset(body, media or "application/octet-stream",
                            '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return digest.hexdigest()[:12], assets


VERSION, ASSETS = _load_assets()
STRINGS: dict[str, dict[str, str]] = {
    lang: orjson.loads(ASSETS[f"i18n/{lang}.json"].body) for lang in LANGS
}


def choose_lang(request: Request) -> str:
    """`?lang=` wins; then the browser's Accept-Language (by q-value); English otherwise."""
    asked = request.query_params.get("lang", "").lower()
    if asked in LANGS:
        return asked
    best, best_q = "en", 0.0
    for part in request.headers.get("accept-language", "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGS and q > best_q:
            best, best_q = lang, q
    return best


def _render(name: str, lang: str) -> bytes:
    table = STRINGS[lang]
    text = (TEMPLATES / name).read_text()

    def fill(m: re.Match[str]) -> str:
        key = m.group(1)
        if key == "version":
            return VERSION
        if key == "lang":
            return lang
        if key == "strings_json":
            # JSON data (not executed; CSP allows it): "</" cannot end the element.
            return orjson.dumps(table).decode().replace("</", "<\\/")
        return html.escape(table[key])

    return PLACEHOLDER.sub(fill, text).encode()


# Rendered once per language: the templates and tables ship with the package.
_PAGES: dict[tuple[str, str], bytes] = {}


def page(name: str, lang: str) -> bytes:
    key = (name, lang)
    if key not in _PAGES:
        _PAGES[key] = _render(name, lang)
    return _PAGES[key]


def _html(request: Request, name: str) -> Response:
    lang = choose_lang(request)
    body = page(name, lang)
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": etag,
               "Vary": "Accept-Language", "Content-Language": lang}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


def _stream_id(request: Request) -> None:
    if not SID.match(request.path_params["sid"]):
        raise DomainError("not_found", "no such page")


async def start_page(request: Request) -> Response:
    return _html(request, "index.html")


async def host_page(request: Request) -> Response:
    _stream_id(request)
    return _html(request, "host.html")


async def watch_page(request: Request) -> Response:
    _stream_id(request)
    return _html(request, "watch.html")


async def static_file(request: Request) -> Response:
    asset = ASSETS.get(request.path_params["path"])
    if asset is None:
        raise DomainError("not_found", "no such file")
    current = request.path_params["version"] == VERSION
    # An old page asking for an old version gets today's file, but not cached for good.
    cache = "public, max-age=31536000, immutable" if current else "no-cache"
    headers = {"Cache-Control": cache, "ETag": asset.etag, "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


async def favicon(request: Request) -> Response:
    asset = ASSETS["icon.svg"]
    return Response(asset.body, media_type=asset.media_type,
                    headers={"Cache-Control": "public, max-age=86400"})


routes = [
    Route("/", start_page, methods=["GET", "HEAD"]),
    Route("/host/{sid}", host_page, methods=["GET", "HEAD"]),
    Route("/s/{sid}", watch_page, methods=["GET", "HEAD"]),
    Route("/static/{version}/{path:path}", static_file, methods=["GET", "HEAD"]),
    Route("/favicon.ico", favicon, methods=["GET", "HEAD"]),
]
