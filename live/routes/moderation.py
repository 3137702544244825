"""Host moderation of the chat: delete a comment, mute and unmute viewers, banned words."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import DomainError
from live import schemas
from live.api import ApiRoute
from live.auth import require_host
from live.bodies import Body, read_body
from live.routes.common import load_stream, services_of
from realtime import moderation

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
Word = Annotated[str, Field(min_length=1, max_length=moderation.MAX_BANNED_WORD_CHARS)]


class Mute(Body):
    viewer_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class BannedWords(Body):
    words: Annotated[list[Word], Field(max_length=moderation.MAX_BANNED_WORDS)]


def _id(request: Request, name: str) -> str:
    value = request.path_params[name]
    if not ID_PATTERN.match(value):
        raise DomainError("invalid_id", f"{name} is not a valid id")
    return value


async def delete_comment(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    await load_stream(request, sid)
    comment_id = _id(request, "comment_id")
    seq = await moderation.delete_comment(services_of(request).publisher, sid, comment_id)
    if seq is None:
        raise DomainError("unknown_comment", f"no comment {comment_id!r} in this stream")
    # Deleting again is idempotent: the same answer, nothing broadcast.
    return JSONResponse({"id": comment_id, "deleted": True, "seq": seq})


async def add_mute(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    body = await read_body(request, Mute)
    await load_stream(request, sid)
    await moderation.mute(services_of(request).redis, sid, body.viewer_id)
    return JSONResponse({"viewer_id": body.viewer_id, "muted": True}, status_code=201)


async def list_mutes(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    await load_stream(request, sid)
    return JSONResponse({"viewer_ids": await moderation.muted(services_of(request).redis, sid)})


async def remove_mute(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    await load_stream(request, sid)
    viewer_id = _id(request, "viewer_id")
    if not await moderation.unmute(services_of(request).redis, sid, viewer_id):
        raise DomainError("not_muted", f"viewer {viewer_id!r} is not muted")
    return JSONResponse({"viewer_id": viewer_id, "muted": False})


async def put_banned_words(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    body = await read_body(request, BannedWords)
    await load_stream(request, sid)
    words = await moderation.set_banned_words(services_of(request).redis, sid, body.words)
    return JSONResponse({"words": words})


async def get_banned_words(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    await load_stream(request, sid)
    return JSONResponse({"words": await moderation.banned_words(services_of(request).redis, sid)})


GONE = {404: "unknown_stream", 410: "stream_archived"}

routes = [
    ApiRoute("/api/streams/{sid}/comments/{comment_id}", delete_comment, "DELETE",
             summary="Delete a comment (again: the same answer)", auth="host",
             ok={200: schemas.CommentDeleted},
             errors={**GONE, 400: "invalid_id", 404: "unknown_stream / unknown_comment"}),
    ApiRoute("/api/streams/{sid}/mutes", add_mute, "POST", summary="Mute a viewer",
             auth="host", body=Mute, ok={201: schemas.MuteState}, errors=GONE),
    ApiRoute("/api/streams/{sid}/mutes", list_mutes, "GET", summary="Muted viewers",
             auth="host", ok={200: schemas.MuteList}, errors=GONE),
    ApiRoute("/api/streams/{sid}/mutes/{viewer_id}", remove_mute, "DELETE",
             summary="Unmute a viewer", auth="host", ok={200: schemas.MuteState},
             errors={**GONE, 400: "invalid_id", 404: "unknown_stream / not_muted"}),
    ApiRoute("/api/streams/{sid}/banned-words", put_banned_words, "PUT",
             summary="Replace the banned words", auth="host", body=BannedWords,
             ok={200: schemas.WordList}, errors=GONE),
    ApiRoute("/api/streams/{sid}/banned-words", get_banned_words, "GET",
             summary="The banned words", auth="host", ok={200: schemas.WordList},
             errors=GONE),
]
