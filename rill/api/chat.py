"""Chat routes: start a turn (SSE or one JSON reply), follow a turn's events again, cancel it,
answer a tool call that waits for approval.

A client that leaves an SSE stream only detaches: the turn goes on and is saved; it can be
followed again from any event with GET /api/chat/turns/<id>/events. Stopping is explicit.
"""
from __future__ import annotations

import re

from flask import Blueprint, g, jsonify, request

from .. import metrics
from ..chat.turn import Caller, Turn, approve, start_turn
from ..errors import ApiError
from ..extensions import chat_limit
from ..providers.base import GenerationOptions
from ..schemas.chat import Approval, ChatRequest
from ..services import current
from ..transports.sse import sse_response
from .requests import json_body, parse

bp = Blueprint("chat", __name__, url_prefix="/api/chat")
SEQ = re.compile(r"[0-9]{1,9}")


def start(req: ChatRequest, caller: Caller) -> Turn:
    """The turn a chat request asks for (the HTTP routes and Socket.IO's chat_stream)."""
    rill = current()
    options = GenerationOptions(max_tokens=req.max_tokens or rill.settings.default_max_tokens,
                                temperature=req.temperature, top_p=req.top_p, seed=req.seed,
                                hidden_states=req.return_hidden_states)
    return start_turn(rill, caller, req.message, options, model=req.model, thread_id=req.thread_id or req.session_id,
                      parent_id=req.parent_id, system=req.system, replace_turn=req.replace_turn, turn_id=req.turn_id,
                      new_root="parent_id" in req.model_fields_set and req.parent_id is None,
                      not_found="thread_not_found" if req.thread_id else "session_not_found", files=tuple(req.files or ()),
                      mcp_servers=None if req.mcp_servers is None else tuple(req.mcp_servers))


def follow(turn, after: int = -1):
    return sse_response(turn.follow(after, current().settings.keepalive_seconds), api="sse",
                        headers={"X-Session-Id": turn.thread_id or "", "X-Thread-Id": turn.thread_id or "",
                                 "X-Turn-Id": turn.id})


@bp.post("/stream")
@chat_limit
def chat_stream():
    return follow(start(parse(ChatRequest, json_body()), Caller(g.user, "sse", g.request_id)))


@bp.post("")
@chat_limit
def chat():
    turn = start(parse(ChatRequest, json_body()), Caller(g.user, "app", g.request_id))
    reply = turn.collect()
    stats = {k: v for k, v in reply.done.items() if k != "done"}
    place = turn.place
    response = jsonify({"session_id": place.thread_id, "thread_id": place.thread_id, "question_id": place.question_id,
                        "reply_id": place.reply_id, "turn_id": turn.id, "model": turn.model, "reply": reply.text,
                        **stats})
    response.headers["X-Session-Id"] = response.headers["X-Thread-Id"] = place.thread_id
    return response


def find_turn(turn_id: str):
    turn = current().turns.get(turn_id, g.user)
    if turn is None:
        raise ApiError(404, "turn_not_found", f"no turn {turn_id!r}: unknown, expired, or not yours")
    return turn


def resume_point() -> int:
    """The last seq the client has: Last-Event-ID (what EventSource sends) or ?after; -1 = none."""
    header, query = request.headers.get("Last-Event-ID"), request.args.get("after")
    for name, value in (("Last-Event-ID", header), ("after", query)):
        if value is not None:
            if not SEQ.fullmatch(value.strip()):
                raise ApiError(400, "invalid_request_error",
                               f"{name} must be the id (a non-negative integer) of the last event received, "
                               f"not {value[:40]!r}")
            return int(value)
    return -1


@bp.get("/turns/<turn_id>/events")
def turn_events(turn_id: str):
    after = resume_point()
    turn = find_turn(turn_id)
    if turn.log.closed and after >= turn.log.last_seq:
        return "", 204  # nothing more will come: tells EventSource to stop reconnecting
    metrics.RESUMES.labels("sse").inc()
    return follow(turn, after)


@bp.post("/turns/<turn_id>/cancel")
def cancel_turn(turn_id: str):
    turn = find_turn(turn_id)
    if not turn.running:
        return jsonify({"turn_id": turn_id, "cancelled": False, "status": turn.state.value})
    turn.cancel()
    return jsonify({"turn_id": turn_id, "cancelled": True}), 202


@bp.post("/turns/<turn_id>/approve")
def approve_tool_call(turn_id: str):
    """Run (approved) or decline a call to an "ask first" MCP server; its turn goes on."""
    answer = parse(Approval, json_body())
    approve(find_turn(turn_id), answer.tool_call_id, answer.approved)
    return jsonify({"turn_id": turn_id, "tool_call_id": answer.tool_call_id, "approved": answer.approved}), 202
