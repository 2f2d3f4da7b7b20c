"""Socket.IO transport: `chat_stream` and `chat_cancel` in, `chat_*` events out to that client only.

One turn at a time per connection: a second `chat_stream` while one runs is refused with
`chat_error` type `turn_in_progress`. A client that disconnects cancels its running turn.
Flask's before_request hooks do not run for Socket.IO events, so the token is checked at
connect and the rate limit is hit here, on the same budget as the HTTP chat routes.
"""
from __future__ import annotations

import time

from flask import current_app, request
from flask_socketio import ConnectionRefusedError
from limits import parse as parse_limit

from ..auth import ANONYMOUS, limit_key
from ..chat.turn import Turn, start_turn
from ..errors import ApiError, error_body
from ..extensions import CHAT_SCOPE, limiter
from ..schemas import ChatRequest, parse

OUT = {"start": "chat_start", "token": "chat_token", "done": "chat_complete", "error": "chat_error"}


def register(socketio) -> None:
    running: dict[str, Turn] = {}  # connection sid -> its turn
    users: dict[str, str] = {}  # connection sid -> who connected

    def refuse(type: str, message: str, **extra) -> dict:
        """Refuse a request: no turn runs for it, so turn_id is null."""
        body = {"turn_id": None, **error_body(type, message)}
        body["error"].update(extra)
        socketio.emit("chat_error", body, to=request.sid)
        return body

    def seconds_until_allowed(user: str) -> int:
        """0 when the chat rate limit lets this request through (and counts it)."""
        item = parse_limit(current_app.config["RILL"].rate_limit)
        key = limit_key(user)
        if limiter.limiter.hit(item, key, CHAT_SCOPE):
            return 0
        reset, _ = limiter.limiter.get_window_stats(item, key, CHAT_SCOPE)
        return max(1, int(reset - time.time()) + 1)

    @socketio.on("connect")
    def connect(payload=None):
        auth = current_app.extensions["rill"].auth
        if not auth.enabled:
            users[request.sid] = ANONYMOUS
            return
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise ConnectionRefusedError("missing token: connect with auth {\"token\": \"<token>\"}")
        try:
            users[request.sid] = auth.verify(token)
        except ApiError as err:
            raise ConnectionRefusedError(err.message)

    def pump(turn: Turn, sid: str) -> None:
        """Emit each event as the model produces it; runs as a background task."""
        try:
            for event in turn.events():
                if event.final and running.get(sid) is turn:
                    del running[sid]  # free before telling the client, who may ask again at once
                if event.kind != "ping":
                    socketio.emit(OUT[event.kind], {"turn_id": turn.id, **event.data}, to=sid)
                    socketio.sleep(0)  # let the server send it now, not in a burst at the end
        finally:
            if running.get(sid) is turn:
                del running[sid]

    @socketio.on("chat_stream")
    def chat_stream(data=None):
        if not isinstance(data, dict):
            return refuse("invalid_request_error", "payload must be an object with a `message` field, "
                                                   f"not {type(data).__name__}")
        if request.sid in running:
            return refuse("turn_in_progress", f"turn {running[request.sid].id} is still streaming on this "
                                              "connection; wait for chat_complete or send chat_cancel first")
        user = users.get(request.sid)
        if user is None:  # the connection is gone, or was never let in
            return refuse("authentication_error", "this connection is not signed in; connect again")
        wait = seconds_until_allowed(user)
        if wait:
            return refuse("rate_limit_error", f"rate limit exceeded ({current_app.config['RILL'].rate_limit}); "
                                              f"retry in {wait} s", retry_after=wait)
        try:
            turn = start_turn(current_app.extensions["rill"], parse(ChatRequest, data), user)
        except ApiError as err:
            return refuse(err.type, err.message)
        running[request.sid] = turn
        socketio.start_background_task(pump, turn, request.sid)
        return {"turn_id": turn.id, "session_id": turn.session_id}

    @socketio.on("chat_cancel")
    def chat_cancel(data=None):
        turn_id = data.get("turn_id") if isinstance(data, dict) else None
        turn = running.get(request.sid)
        if not isinstance(turn_id, str) or turn is None or turn.id != turn_id:
            return refuse("turn_not_found", f"no running turn {turn_id!r} on this connection")
        turn.cancel()
        return {"turn_id": turn_id, "cancelled": True}

    @socketio.on("disconnect")
    def disconnect(*_):
        users.pop(request.sid, None)
        turn = running.get(request.sid)
        if turn:
            turn.cancel()
