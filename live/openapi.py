"""`GET /openapi.json`: the OpenAPI 3.1 document, generated from the app's own routes.

Every `ApiRoute` of the routing table becomes an operation: its path parameters, its
query model's fields, its body model, each response with its model's JSON schema
(pydantic's), its errors with the one error shape, and its bearer token. Nothing here
lists endpoints by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute

from live import schemas
from live.api import ApiRoute

TITLE = "livecart"
VERSION = "0.1.0"
REF = "#/components/schemas/{model}"
# Ids the service issues: letters, digits, `_` and `-`.
ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
SECURITY_SCHEMES = {
    "host": {
        "type": "http",
        "scheme": "bearer",
        "description": "the host token of the stream (from POST /api/streams)",
    },
    "viewer": {
        "type": "http",
        "scheme": "bearer",
        "description": "a viewer token (from POST /api/viewers)",
    },
}
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _first_line(model: type[BaseModel]) -> str:
    return (model.__doc__ or model.__name__).strip().splitlines()[0]


def _models(routes: list[ApiRoute]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"Error": schemas.Error}
    for route in routes:
        for model in (route.body_model, *route.ok.values()):
            if model is None:
                continue
            if found.setdefault(model.__name__, model) is not model:
                # Components are named after their model: two models, one name.
                raise ValueError(f"two models named {model.__name__} in the API")
    return list(found.values())


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value: `T | None` documents as T."""
    options = schema.get("anyOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0]}
    if schema.get("default", 0) is None:
        schema = {k: v for k, v in schema.items() if k != "default"}
    return schema


def _query_parameters(model: type[BaseModel] | None) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.get("description", ""),
            "schema": _not_null(
                {k: v for k, v in prop.items() if k not in ("title", "description")}
            ),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def _operation(route: ApiRoute) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": ID_SCHEMA}
        for name in _PARAM.findall(route.path)
    ]
    parameters += _query_parameters(route.query)
    responses: dict[str, Any] = {}
    for status, model in sorted(route.ok.items()):
        doc = route.summary if model is None else _first_line(model)
        if model is not None and route.media_type == "application/json":
            responses[str(status)] = {"description": doc, "content": _json(_ref(model))}
        else:
            responses[str(status)] = {
                "description": doc,
                "content": {route.media_type: {"schema": {"type": "string"}}},
            }
    for status, text in sorted(route.errors.items()):
        if str(status) not in responses:
            responses[str(status)] = {"description": text, "content": _json(_ref(schemas.Error))}
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "parameters": parameters,
        "responses": responses,
    }
    if route.description:
        op["description"] = route.description
    if route.body_model is not None:
        op["requestBody"] = {"required": True, "content": _json(_ref(route.body_model))}
    if route.auth is not None:
        op["security"] = [{route.auth: []}]
    else:
        op["security"] = []  # open to anyone
    return op


def build_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    api = [r for r in routes if isinstance(r, ApiRoute)]
    _, defs = models_json_schema(
        [(m, "validation") for m in _models(api)], ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in api:
        path = _PARAM.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Live-stream selling: streams, products, flash sales, "
            "reservations and orders. Errors are always {\"error\", \"detail\"}. The "
            "websocket GET /ws/streams/{id} is described in the README.",
        },
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
    }


async def openapi_json(request: Request) -> JSONResponse:
    doc = getattr(request.app.state, "openapi", None)
    if doc is None:
        doc = request.app.state.openapi = build_document(request.app.routes)
    return JSONResponse(doc)


routes = [
    ApiRoute(
        "/openapi.json", openapi_json, "GET",
        summary="This OpenAPI 3.1 document", ok={200: schemas.OpenApiDocument},
    ),
]
