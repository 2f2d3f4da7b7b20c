"""GET /openapi.json: the HTTP API as OpenAPI 3.1, its request bodies generated from the
pydantic request models (the same ones that validate requests)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from pydantic import BaseModel, TypeAdapter

from . import __version__
from .api.models import CancelRequest, LoadRequest, PullRequest
from .api.sessions import SessionCreate
from .schemas.threads import ForkRequest, MessageCreate, MessageUpdate, ShareRequest, ThreadCreate, ThreadUpdate
from .chat.events import EVENTS
from .schemas.anthropic import AnthropicRequest
from .schemas.chat import Approval, ChatRequest
from .schemas.embeddings import EmbeddingsRequest
from .schemas.openai import OpenAIChatRequest
from .schemas.responses import ResponsesRequest
from .services import current

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "properties": {
    "type": {"type": "string"}, "message": {"type": "string"}}}}}
ANY_JSON = {"application/json": {"schema": {"type": "object"}}}
SSE = {"text/event-stream": {"schema": {
    "type": "string",
    "description": "A stream of Server-Sent Events: `id: <seq>`, `event: <name>` and one `data:` line of JSON "
                   "per event, plus `: ping` comment lines. The events and their data are in x-events (with "
                   "each one's Socket.IO name); STREAMING_API_DOCS.md has the whole format.",
    "x-events": {kind: {**TypeAdapter(payload).json_schema(), "x-socketio": payload.socketio}
                 for kind, payload in EVENTS.items()},
    "examples": ['id: 0\nevent: start\ndata: {"session_id":"s1","turn_id":"t1","model":"local/x"}\n\n'
                 'id: 1\nevent: token\ndata: {"token":"Hi","count":1}\n\n'],
}}}


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


def nullable_part(prop: dict) -> dict:
    """The non-null branch of an `X | None` property (where the bounds are)."""
    return next((p for p in prop.get("anyOf", []) if p.get("type") != "null"), prop)


def server_bounds(schemas: dict, settings) -> None:
    """The limits that come from settings, which the validators check at request time."""
    chat = schemas["ChatRequest"]["properties"]
    nullable_part(chat["message"])["maxLength"] = settings.max_message_chars
    nullable_part(chat["system"])["maxLength"] = settings.max_system_chars
    for name in ("ChatRequest", "OpenAIChatRequest", "AnthropicRequest", "ResponsesRequest"):
        props = schemas[name]["properties"]
        for field in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
            if field in props:
                nullable_part(props[field])["maximum"] = settings.max_tokens_cap


def build(settings, auth_enabled: bool) -> dict:
    schemas = {"Error": ERROR}
    for model in (ChatRequest, Approval, OpenAIChatRequest, ResponsesRequest, EmbeddingsRequest, AnthropicRequest,
                  LoadRequest, PullRequest, CancelRequest, SessionCreate, ThreadCreate, ThreadUpdate, MessageCreate,
                  MessageUpdate, ForkRequest, ShareRequest):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    server_bounds(schemas, settings)
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
        "/api/chat/turns/{turn_id}/approve": {"post": {
            "summary": "Run (approved) or decline a tool call that waits for approval (a tool_approval_request event)",
            "parameters": path_param("turn_id"), "requestBody": body(Approval),
            "responses": {"202": {"description": "answered; the turn goes on"},
                          **responses(ANY_JSON, 400, 401, 404, 409, 415)}}},
        "/api/chat/turns/{turn_id}/events": {"get": {
            "summary": "A turn's events after Last-Event-ID (or ?after), then the live ones, as SSE",
            "parameters": [*path_param("turn_id"),
                           {"name": "after", "in": "query", "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9]{1,9}$"}},
                           {"name": "Last-Event-ID", "in": "header", "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9]{1,9}$"}}],
            "responses": {**responses(SSE, 400, 401, 404), "204": {"description": "the turn has ended and the "
                                                                                  "client has every event"}}}},
        "/api/chat/sessions": {
            "get": {"summary": "List sessions", "responses": responses(ANY_JSON, 401)},
            "post": {"summary": "Create a session, empty or restored from the client's copy of its messages",
                     "requestBody": {**body(SessionCreate), "required": False},
                     "responses": {"201": {"description": "created"}, **responses(ANY_JSON, 400, 401, 413, 415)}}},
        "/api/chat/sessions/{session_id}": {
            "get": {"summary": "A session with its messages", "parameters": path_param("session_id"),
                    "responses": responses(ANY_JSON, 401, 404)},
            "delete": {"summary": "Delete a session", "parameters": path_param("session_id"),
                       "responses": {"204": {"description": "deleted"}, **responses(ANY_JSON, 401, 404)}}},
        "/api/threads": {
            "get": {"summary": "What changed since a revision: {revision, threads, deleted} (since=0: everything)",
                    "parameters": [{"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
                    "responses": responses(ANY_JSON, 400, 401)},
            "post": {"summary": "A new, empty thread", "requestBody": {**body(ThreadCreate), "required": False},
                     "responses": {"201": {"description": "created"}, **responses(ANY_JSON, 400, 401, 415)}}},
        "/api/search": {"get": {
            "summary": "Your messages with every word of q, on any branch: {hits: [{thread_id, message_id, snippet}]} "
                       "(snippet: HTML, the text escaped, matches in <mark>)",
            "parameters": [{"name": "q", "in": "query", "required": True, "schema": {"type": "string",
                                                                                    "maxLength": 500}}],
            "responses": responses(ANY_JSON, 400, 401)}},
        "/api/threads/changes": {"get": {
            "summary": "The user's revisions as threads change, as SSE (`event: changed`, data {revision}; "
                       "a `: ping` first where `since` is the newest)",
            "parameters": [{"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
            "responses": responses({"text/event-stream": {"schema": {"type": "string"}}}, 400, 401)}},
        "/api/threads/{thread_id}": {
            "get": {"summary": "A thread and all its messages (a tree: parent_id, active_child)",
                    "parameters": path_param("thread_id"), "responses": responses(ANY_JSON, 401, 404)},
            "patch": {"summary": "Rename, or choose the branch shown (current_leaf)", "parameters": path_param("thread_id"),
                      "requestBody": body(ThreadUpdate), "responses": responses(ANY_JSON, 400, 401, 404, 415)},
            "delete": {"summary": "Delete a thread", "parameters": path_param("thread_id"),
                       "responses": {"204": {"description": "deleted"}, **responses(ANY_JSON, 401, 404)}}},
        "/api/threads/import": {"post": {
            "summary": "Import a Rill export, a ChatGPT conversations.json or an Open WebUI export (up to "
                       "RILL_MAX_IMPORT_BYTES): {imported, skipped}; the same file twice adds nothing",
            "requestBody": {"required": True, "content": ANY_JSON},
            "responses": responses(ANY_JSON, 400, 401, 413, 415)}},
        "/api/threads/{thread_id}/path": {"get": {
            "summary": "A page of a path, oldest first: {thread, messages, siblings, has_more}; the newest `limit` "
                       "messages above `before`, on the path to `leaf` (default: the current leaf)",
            "parameters": [*path_param("thread_id"),
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                           {"name": "before", "in": "query", "schema": {"type": "string"}},
                           {"name": "leaf", "in": "query", "schema": {"type": "string"}}],
            "responses": responses(ANY_JSON, 400, 401, 404)}},
        "/api/threads/{thread_id}/export": {"get": {
            "summary": "format=markdown: the current path as Markdown; format=json (default): the whole tree",
            "parameters": [*path_param("thread_id"), {"name": "format", "in": "query", "schema": {
                "type": "string", "enum": ["markdown", "json"]}}],
            "responses": responses({**ANY_JSON, "text/markdown": {"schema": {"type": "string"}}}, 400, 401, 404)}},
        "/api/threads/{thread_id}/fork": {"post": {
            "summary": "A new thread with a copy of the path down to leaf (default: the current leaf)",
            "parameters": path_param("thread_id"), "requestBody": {**body(ForkRequest), "required": False},
            "responses": {"201": {"description": "created"}, **responses(ANY_JSON, 400, 401, 404, 415)}}},
        "/api/threads/{thread_id}/share": {"post": {
            "summary": "A read-only snapshot of the branch down to leaf at an unguessable URL: {token, url, ...}",
            "parameters": path_param("thread_id"), "requestBody": {**body(ShareRequest), "required": False},
            "responses": {"201": {"description": "shared"}, **responses(ANY_JSON, 400, 401, 404, 415)}}},
        "/api/threads/{thread_id}/shares": {"get": {
            "summary": "The thread's share links", "parameters": path_param("thread_id"),
            "responses": responses(ANY_JSON, 401, 404)}},
        "/api/threads/{thread_id}/share/{token}": {"delete": {
            "summary": "Revoke a share link (it answers 404 after)",
            "parameters": [*path_param("thread_id"), *path_param("token")],
            "responses": {"204": {"description": "revoked"}, **responses(ANY_JSON, 401, 404)}}},
        "/api/files": {"post": {
            "summary": "Upload one file (multipart field `file`, up to RILL_MAX_UPLOAD_BYTES; images, PDFs, text; "
                       "typed by its bytes): {id, name, type, size, sha256, created_at, width, height}",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "additionalProperties": False,
                "properties": {"file": {"type": "string", "format": "binary"}}}}}},
            "responses": {"201": {"description": "stored"}, **responses(ANY_JSON, 400, 401, 413, 415)}}},
        "/api/files/{file_id}": {
            "get": {"summary": "The file's bytes (its owner only; ETag: its SHA-256; cached for good)",
                    "parameters": path_param("file_id"),
                    "responses": responses({"application/octet-stream": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}, 401, 404)},
            "delete": {"summary": "Delete a file (its bytes go with the last file that has them)",
                       "parameters": path_param("file_id"),
                       "responses": {"204": {"description": "deleted"}, **responses(ANY_JSON, 401, 404)}}},
        "/api/files/{file_id}/preview": {"get": {
            "summary": "An image as models get it: upright, no metadata, PNG or JPEG, at most RILL_IMAGE_MAX_SIDE px",
            "parameters": path_param("file_id"),
            "responses": responses({"image/png": {"schema": {"type": "string", "format": "binary"}},
                                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, 401, 404)}},
        "/api/files/{file_id}/info": {"get": {
            "summary": "The file's row: {id, name, type, size, sha256, created_at, width, height}",
            "parameters": path_param("file_id"), "responses": responses(ANY_JSON, 401, 404)}},
        "/api/shared/{token}": {"get": {
            "summary": "What a share link shows: {title, messages, shared_at, files}; public unless RILL_SHARE_PUBLIC=0",
            "security": [], "parameters": path_param("token"), "responses": responses(ANY_JSON, 401, 404)}},
        "/api/shared/{token}/files/{file_id}": {"get": {
            "summary": "A file the share link shows (the link keeps it until revoked)", "security": [],
            "parameters": [*path_param("token"), *path_param("file_id")],
            "responses": responses({"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                                   401, 404)}},
        "/api/shared/{token}/files/{file_id}/preview": {"get": {
            "summary": "The preview of an image the share link shows", "security": [],
            "parameters": [*path_param("token"), *path_param("file_id")],
            "responses": responses({"image/png": {"schema": {"type": "string", "format": "binary"}},
                                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, 401, 404)}},
        "/s/{token}": {"get": {
            "summary": "The read-only page of a share link (noindex)", "security": [], "parameters": path_param("token"),
            "responses": responses({"text/html": {"schema": {"type": "string"}}})}},
        "/api/threads/{thread_id}/messages": {"post": {
            "summary": "Add a message under parent_id, written by hand (no reply is asked for)",
            "parameters": path_param("thread_id"), "requestBody": body(MessageCreate),
            "responses": {"201": {"description": "created"}, **responses(ANY_JSON, 400, 401, 404, 415)}}},
        "/api/threads/{thread_id}/messages/{message_id}": {
            "patch": {"summary": "Replace a message's parts (an edit saved in place)",
                      "parameters": [*path_param("thread_id"), *path_param("message_id")],
                      "requestBody": body(MessageUpdate), "responses": responses(ANY_JSON, 400, 401, 404, 415)},
            "delete": {"summary": "Delete a message and every message below it (a branch)",
                       "parameters": [*path_param("thread_id"), *path_param("message_id")],
                       "responses": {"204": {"description": "deleted"}, **responses(ANY_JSON, 401, 404)}}},
        "/api/mcp": {"get": {"summary": "The MCP servers configured (RILL_MCP_CONFIG) and their tools",
                             "responses": responses(ANY_JSON, 401)}},
        "/api/models": {"get": {"summary": "Providers and models", "responses": responses(ANY_JSON, 401)}},
        "/api/models/load": {"post": {"summary": "Load another local model", "requestBody": body(LoadRequest),
                                      "responses": {"202": {"description": "loading"},
                                                    **responses(ANY_JSON, 400, 401, 403, 409, 413, 415)}}},
        "/api/models/pull": {"post": {
            "summary": "Pull a model from the Hugging Face hub by name (org/repo:QUANT or org/repo), then load it",
            "requestBody": body(PullRequest),
            "responses": {"202": {"description": "pulling"}, **responses(ANY_JSON, 400, 401, 403, 409, 413, 415)}}},
        "/api/models/cancel": {"post": {
            "summary": "Cancel a pull (what is down stays in the hub's cache: pulling again resumes)",
            "requestBody": body(CancelRequest),
            "responses": {"202": {"description": "cancelling"}, **responses(ANY_JSON, 400, 401, 403, 404, 409, 415)}}},
        "/api/models/events": {"get": {
            "summary": "The model listing as a `models` server event, again whenever it changes (pull progress)",
            "responses": responses({"text/event-stream": {"schema": {"type": "string"}}}, 401)}},
        "/health": {"get": {"summary": "Health", "security": [], "responses": responses(ANY_JSON)}},
        "/livez": {"get": {"summary": "The process answers", "security": [], "responses": responses(ANY_JSON)}},
        "/readyz": {"get": {"summary": "Model loaded and stores reachable (503 when not)", "security": [],
                            "responses": {**responses(ANY_JSON), "503": {"description": "not ready",
                                                                         "content": ANY_JSON}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (text format)", "security": [],
                             "responses": responses({"text/plain": {"schema": {"type": "string"}}}, 401, 404)}},
        "/api/usage": {"get": {
            "summary": "Tokens, turns and cost by day and model: your own, or any user's for admins",
            "parameters": [
                {"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 366,
                                                           "default": 30}},
                {"name": "user", "in": "query", "description": "another user (admins), or * for everyone",
                 "schema": {"type": "string"}}],
            "responses": responses(ANY_JSON, 400, 401, 403)}},
        "/v1/chat/completions": {"post": {"summary": "OpenAI-compatible chat", "requestBody": body(OpenAIChatRequest),
                                          "responses": responses({**ANY_JSON, **SSE}, *chat_errors)}},
        "/v1/responses": {"post": {"summary": "OpenAI Responses API: create a response (stored unless store is false)",
                                   "requestBody": body(ResponsesRequest),
                                   "responses": responses({**ANY_JSON, **SSE}, *chat_errors)}},
        "/v1/responses/{response_id}": {
            "get": {"summary": "A stored response; with ?stream=true&starting_after=N its events again, after N",
                    "parameters": [*path_param("response_id"),
                                   {"name": "stream", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]}},
                                   {"name": "starting_after", "in": "query", "schema": {"type": "string",
                                                                                       "pattern": "^[0-9]+$"}}],
                    "responses": responses({**ANY_JSON, **SSE}, 400, 401, 404)},
            "delete": {"summary": "Delete a stored response (a running one is stopped)",
                       "parameters": path_param("response_id"), "responses": responses(ANY_JSON, 401, 404)}},
        "/v1/responses/{response_id}/input_items": {"get": {
            "summary": "A stored response's own input items, a page at a time",
            "parameters": [*path_param("response_id"),
                           {"name": "limit", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
                           {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}},
                           {"name": "after", "in": "query", "schema": {"type": "string"}}],
            "responses": responses(ANY_JSON, 400, 401, 404)}},
        "/v1/responses/{response_id}/cancel": {"post": {
            "summary": "Cancel a background response", "parameters": path_param("response_id"),
            "responses": responses(ANY_JSON, 400, 401, 404)}},
        "/v1/embeddings": {"post": {"summary": "OpenAI-compatible embeddings (a local model's mean-pooled states)",
                                    "requestBody": body(EmbeddingsRequest),
                                    "responses": responses(ANY_JSON, 400, 401, 404, 413, 415, 429, 502, 503)}},
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
    rill = current()
    return jsonify(build(rill.settings, rill.auth.enabled))
