"""GET /openapi.json: the HTTP API as OpenAPI 3.1, its request bodies generated from the
pydantic request models (the same ones that validate requests)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel

from . import __version__
from .api.models import LoadRequest
from .schemas import AnthropicRequest, ChatRequest, OpenAIChatRequest

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "properties": {
    "type": {"type": "string"}, "message": {"type": "string"}}}}}
ANY_JSON = {"application/json": {"schema": {"type": "object"}}}
SSE = {"text/event-stream": {"schema": {"type": "string"}}}


def body(model: type[BaseModel]) -> dict:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}}


def responses(ok: dict, *errors: int) -> dict:
    out = {"200": {"description": "OK", "content": ok}}
    for status in errors:
        out[str(status)] = {"description": "error", "content": {"application/json": {"schema": {"$ref": REF.format(
            model="Error")}}}}
    return out


def path_param(name: str) -> list[dict]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def build(auth_enabled: bool) -> dict:
    schemas = {"Error": ERROR}
    for model in (ChatRequest, OpenAIChatRequest, AnthropicRequest, LoadRequest):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    chat_errors = (400, 401, 404, 413, 415, 429)
    paths = {
        "/api/chat/stream": {"post": {"summary": "Chat, streamed as SSE", "requestBody": body(ChatRequest),
                                      "responses": responses(SSE, *chat_errors)}},
        "/api/chat": {"post": {"summary": "Chat, one JSON reply", "requestBody": body(ChatRequest),
                               "responses": responses(ANY_JSON, *chat_errors, 502)}},
        "/api/chat/turns/{turn_id}/cancel": {"post": {"summary": "Cancel a running turn",
                                                      "parameters": path_param("turn_id"),
                                                      "responses": {"202": {"description": "cancelled"},
                                                                    **responses(ANY_JSON, 401, 404)}}},
        "/api/chat/sessions": {
            "get": {"summary": "List sessions", "responses": responses(ANY_JSON, 401)},
            "post": {"summary": "Create a session", "responses": {"201": {"description": "created"}}}},
        "/api/chat/sessions/{session_id}": {
            "get": {"summary": "A session with its messages", "parameters": path_param("session_id"),
                    "responses": responses(ANY_JSON, 401, 404)},
            "delete": {"summary": "Delete a session", "parameters": path_param("session_id"),
                       "responses": {"204": {"description": "deleted"}, **responses(ANY_JSON, 401, 404)}}},
        "/api/models": {"get": {"summary": "Providers and models", "responses": responses(ANY_JSON, 401)}},
        "/api/models/load": {"post": {"summary": "Load another local model", "requestBody": body(LoadRequest),
                                      "responses": {"202": {"description": "loading"},
                                                    **responses(ANY_JSON, 400, 401, 409)}}},
        "/health": {"get": {"summary": "Health", "security": [], "responses": responses(ANY_JSON)}},
        "/v1/chat/completions": {"post": {"summary": "OpenAI-compatible chat", "requestBody": body(OpenAIChatRequest),
                                          "responses": responses({**ANY_JSON, **SSE}, *chat_errors)}},
        "/v1/models": {"get": {"summary": "OpenAI-compatible model list", "responses": responses(ANY_JSON, 401)}},
        "/v1/messages": {"post": {"summary": "Anthropic-compatible messages", "requestBody": body(AnthropicRequest),
                                  "responses": responses({**ANY_JSON, **SSE}, *chat_errors)}},
    }
    doc = {"openapi": "3.1.0", "info": {"title": "Rill", "version": __version__}, "paths": paths,
           "components": {"schemas": schemas}}
    if auth_enabled:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        doc["security"] = [{"bearer": []}]
    return doc


@bp.get("/openapi.json")
def openapi():
    return jsonify(build(current_app.extensions["rill"].auth.enabled))
