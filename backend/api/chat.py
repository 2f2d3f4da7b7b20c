"""Chat routes: POST /api/chat/stream (SSE), POST /api/chat (JSON), cancelling a turn."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify

from ..chat.turn import start_turn
from ..errors import ApiError
from ..extensions import chat_limit
from ..schemas import ChatRequest, json_body, parse
from ..transports.sse import sse_response

bp = Blueprint("chat", __name__, url_prefix="/api/chat")


def services():
    return current_app.extensions["rill"]


@bp.post("/stream")
@chat_limit
def chat_stream():
    turn = start_turn(services(), parse(ChatRequest, json_body()), g.user)
    return sse_response(turn, headers={"X-Session-Id": turn.session_id})


@bp.post("")
@chat_limit
def chat():
    turn = start_turn(services(), parse(ChatRequest, json_body()), g.user)
    reply, done = turn.collect()
    stats = {k: v for k, v in done.items() if k != "done"}
    response = jsonify({"session_id": turn.session_id, "turn_id": turn.id, "model": turn.model,
                        "reply": reply, **stats})
    response.headers["X-Session-Id"] = turn.session_id
    return response


@bp.post("/turns/<turn_id>/cancel")
def cancel_turn(turn_id: str):
    turn = services().turns.get(turn_id)
    if turn is None or turn.user != g.user:
        raise ApiError(404, "turn_not_found", f"no running turn {turn_id!r}")
    turn.cancel()
    return jsonify({"turn_id": turn_id, "cancelled": True}), 202
