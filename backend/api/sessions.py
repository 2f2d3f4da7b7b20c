"""Session endpoints under /api/chat/sessions."""
from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

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
    return current().sessions


def not_found(session_id: str) -> ApiError:
    return ApiError(404, "session_not_found", f"no session {session_id!r} (it may have expired)")


@bp.post("")
def create():
    """An empty session, or one restored from the client's own copy of a conversation (when the
    server lost it: expired, or an older server), so the model keeps the context."""
    restore = parse(SessionCreate, json_body()) if request.content_length or request.is_json else SessionCreate()
    messages = [{"role": m.role, "content": m.content, "status": "complete", "restored": True}
                for m in restore.messages]
    return jsonify(store().create(g.user, messages)), 201


@bp.get("")
def index():
    return jsonify({"sessions": store().list(g.user)})


@bp.get("/<session_id>")
def show(session_id: str):
    session = store().get(session_id, g.user)
    if session is None:
        raise not_found(session_id)
    return jsonify(session)


@bp.delete("/<session_id>")
def delete(session_id: str):
    if not store().delete(session_id, g.user):
        raise not_found(session_id)
    return "", 204
