"""/api/chat/sessions: sessions, as earlier releases had them, are views of threads: a session is
a thread, its messages the thread's current path."""
from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from ..conversations.parts import text_of
from ..errors import ApiError
from ..schemas.common import Text
from ..services import current
from .requests import json_body, parse


class RestoredMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["user", "assistant"]
    content: Text


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {}, {"messages": [{"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "The Rhine."}]},
    ]})
    messages: Annotated[list[RestoredMessage], Field(max_length=500)] = []


bp = Blueprint("sessions", __name__, url_prefix="/api/chat/sessions")  # g.user: see create_app


def store():
    return current().threads


def not_found(session_id: str) -> ApiError:
    return ApiError(404, "session_not_found", f"no session {session_id!r}")


def session_message(message: dict) -> dict:
    """A message of the thread's current path, in the shape sessions have always had."""
    parts = message["parts"]
    out = {"created_at": message["created_at"], "role": message["role"], "content": text_of(parts),
           "status": message["status"], "model": message["model"], "turn_id": message["turn_id"],
           "tokens": (message["usage"] or {}).get("completion_tokens" if message["role"] == "assistant"
                                                   else "prompt_tokens")}
    if reasoning := "".join(p["text"] for p in parts if p["type"] == "reasoning"):
        out["reasoning"] = reasoning
    if calls := [{k: p[k] for k in ("id", "name", "arguments")} for p in parts if p["type"] == "tool_call"]:
        out["tool_calls"] = calls
    return out


def session_of(thread: dict) -> dict:
    return {k: thread[k] for k in ("id", "title", "created_at", "updated_at", "message_count")}


@bp.post("")
def create():
    """An empty session, or one restored from the client's own copy of a conversation (when the
    server lost it: an older server), so the model keeps the context."""
    restore = parse(SessionCreate, json_body()) if request.content_length or request.is_json else SessionCreate()
    chain = [{"role": m.role, "parts": [{"type": "text", "text": m.content}]} for m in restore.messages]
    return jsonify(session_of(store().create_thread(g.user, chain=chain))), 201


@bp.get("")
def index():
    return jsonify({"sessions": [session_of(t) for t in store().list(g.user)]})


@bp.get("/<session_id>")
def show(session_id: str):
    thread = store().thread(session_id, g.user)
    if thread is None:
        raise not_found(session_id)
    path = store().path(session_id, g.user)
    return jsonify({**session_of(thread), "messages": [session_message(m) for m in path]})


@bp.delete("/<session_id>")
def delete(session_id: str):
    if not store().delete_thread(g.user, session_id):
        raise not_found(session_id)
    return "", 204
