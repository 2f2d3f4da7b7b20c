"""Session endpoints under /api/chat/sessions."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify

from ..errors import ApiError

bp = Blueprint("sessions", __name__, url_prefix="/api/chat/sessions")  # g.user: see create_app


def store():
    return current_app.extensions["rill"].sessions


def not_found(session_id: str) -> ApiError:
    return ApiError(404, "session_not_found", f"no session {session_id!r} (it may have expired)")


@bp.post("")
def create():
    return jsonify(store().create(g.user)), 201


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
