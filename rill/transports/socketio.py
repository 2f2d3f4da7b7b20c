"""Socket.IO transport: `chat_stream`, `chat_resume`, `chat_cancel` and `chat_approve` in,
`chat_*` events out to that client only, each with the turn's `seq`.

A connection follows the turns it starts or resumes (any of its user's); a client that
disconnects only detaches, the turns go on. `chat_cancel` stops any running turn of the user's;
`chat_approve` answers one of its tool calls that waits for approval.
Flask's before_request hooks do not run for Socket.IO events, so the token is checked at
connect and the rate limit is hit here, on the same budget as the HTTP chat routes.
"""
from __future__ import annotations

import logging
import time
import uuid
from itertools import chain

import engineio.exceptions
import engineio.payload
import engineio.socket
import redis

from flask import request
from flask_socketio import ConnectionRefusedError, join_room
from limits import parse as parse_limit

from .. import metrics
from ..api.chat import start
from ..api.requests import parse
from ..auth import ANONYMOUS, limit_key
from ..chat.events import EVENTS
from ..chat.turn import Caller, Turn, approve
from ..errors import ApiError, error_body, status_of
from ..extensions import CHAT_SCOPE, limiter
from ..refusals import Refused
from ..schemas.chat import Approval, ChatRequest
from ..services import current

log = logging.getLogger(__name__)


def poll_at_most_a_client_batch(self):
    """engineio's Socket.poll, but one long-polling response carries at most
    Payload.max_decode_packets (16) packets; the rest stay queued for the next poll.

    python-engineio's client refuses a bigger response ("Too many packets in payload": it logs
    "Unexpected packet from server, aborting" and disconnects), and the stock poll() sends all
    that is queued: a resume's backlog, or a busy server falling behind a fast stream, went over
    16 and the client stopped part-way. WebSocket sends each packet on its own."""
    queue_empty = self.server.get_queue_empty_exception()
    try:
        packets = [self.queue.get(timeout=self.server.ping_interval + self.server.ping_timeout)]
        self.queue.task_done()
    except queue_empty:
        raise engineio.exceptions.QueueEmpty()
    if packets == [None]:
        return []
    while len(packets) < engineio.payload.Payload.max_decode_packets:
        try:
            pkt = self.queue.get(block=False)
            self.queue.task_done()
        except queue_empty:
            break
        if pkt is None:  # closing: leave the marker for the next poll
            self.queue.put(None)
            break
        packets.append(pkt)
    return packets


engineio.socket.Socket.poll = poll_at_most_a_client_batch


def user_room(user: str) -> str:
    return f"user:{user}"


def register(socketio, feed) -> None:
    """The chat events, and `threads_changed` {revision} to every connection of a user whose
    threads changed (through the message queue, so on every worker)."""
    users: dict[str, str] = {}  # connection sid -> who connected
    feed.listeners.append(lambda user, revision: socketio.emit("threads_changed", {"revision": revision},
                                                               to=user_room(user)))

    def malformed(event: str, args: tuple) -> dict | None:
        """The refusal for a frame that is not one JSON object, or None when it is one."""
        if len(args) == 1 and isinstance(args[0], dict):
            return None
        log.warning("malformed %s frame from %s: %d argument(s), first %s", event, request.sid, len(args),
                    type(args[0]).__name__ if args else "none")
        return refuse("invalid_request_error", f"{event} payload must be an object (one argument, e.g. "
                                               f"{{\"turn_id\": \"...\"}}); got {len(args)} argument(s)")

    def refuse(type: str, message: str, **extra) -> dict:
        """Refuse a request: no turn runs for it, so turn_id is null."""
        body = {"turn_id": None, **error_body(type, message)}
        body["error"].update(extra)
        socketio.emit("chat_error", body, to=request.sid)
        return body

    def seconds_until_allowed(user: str) -> int:
        """0 when the chat rate limit lets this request through (and counts it)."""
        item = parse_limit(current().settings.rate_limit)
        key = limit_key(user)
        if limiter.limiter.hit(item, key, CHAT_SCOPE):
            return 0
        reset, _ = limiter.limiter.get_window_stats(item, key, CHAT_SCOPE)
        return max(1, int(reset - time.time()) + 1)

    server = socketio.server
    dispatch = server.eio.handlers["message"]

    def guarded_dispatch(eio_sid, data):
        """A packet python-socketio cannot decode (bad JSON, unknown type) gets chat_error and one
        WARNING line, not a traceback at ERROR for every frame."""
        try:
            return dispatch(eio_sid, data)
        except Exception as exc:
            log.warning("malformed Socket.IO packet from %s: %s", eio_sid, exc)
            sid = server.manager.sid_from_eio_sid(eio_sid, "/")
            if sid:
                body = {"turn_id": None, **error_body("invalid_request_error", "malformed Socket.IO packet: it "
                                                      "does not decode to an event with a name and JSON arguments")}
                server.emit("chat_error", body, to=sid)

    server.eio.on("message", guarded_dispatch)

    @socketio.on("connect")
    def connect(payload=None):
        auth = current().auth
        if auth.enabled:
            token = payload.get("token") if isinstance(payload, dict) else None
            if not isinstance(token, str) or not token:
                raise ConnectionRefusedError("missing token: connect with auth {\"token\": \"<token>\"}")
            try:
                users[request.sid] = auth.verify(token)
            except ApiError as err:
                raise ConnectionRefusedError(err.message)
        else:
            users[request.sid] = ANONYMOUS
        join_room(user_room(users[request.sid]))  # where threads_changed goes

    def follow(turn: Turn, sid: str, events) -> None:
        """Emit a turn's events to one connection as they come, until the turn ends or the
        connection goes; runs as a background task (no app context here)."""
        try:
            with metrics.streaming("socketio"):
                for event in chain.from_iterable(events):
                    if sid not in users:
                        return  # disconnected: detach
                    if event.kind != "ping":
                        # This worker holds the connection: no trip through the message queue.
                        socketio.emit(EVENTS[event.kind].socketio, {"turn_id": turn.id, "seq": event.seq, **event.data},
                                      to=sid, ignore_queue=True)
                        socketio.sleep(0)  # let the server send it now, not in a burst at the end
        except redis.RedisError as exc:  # the shared store went away: say so; resume when it is back
            _, type, message = status_of(exc)
            socketio.emit("chat_error", {"turn_id": turn.id, **error_body(type, message)}, to=sid, ignore_queue=True)
        finally:
            events.close()

    def attach(turn: Turn, after: int) -> dict:
        events = turn.follow(after, current().settings.keepalive_seconds)
        socketio.start_background_task(follow, turn, request.sid, events)
        return {"turn_id": turn.id, "session_id": turn.thread_id, "thread_id": turn.thread_id}

    def find(user: str, turn_id) -> Turn | None:
        return current().turns.get(turn_id, user) if isinstance(turn_id, str) else None

    @socketio.on("chat_stream")
    def chat_stream(*args):
        if refusal := malformed("chat_stream", args):
            return refusal
        data = args[0]
        user = users.get(request.sid)
        if user is None:  # the connection is gone, or was never let in
            return refuse("authentication_error", "this connection is not signed in; connect again")
        wait = seconds_until_allowed(user)
        if wait:
            metrics.RATE_LIMITED.labels("socketio").inc()
            return refuse("rate_limit_error", f"rate limit exceeded ({current().settings.rate_limit}); "
                                              f"retry in {wait} s", retry_after=wait)
        try:
            turn = start(parse(ChatRequest, data), Caller(user, "socketio", uuid.uuid4().hex))
        except (ApiError, Refused) as err:
            return refuse(err.type, err.message)
        return attach(turn, -1)

    @socketio.on("chat_resume")
    def chat_resume(*args):
        """{turn_id, after_seq}: the turn's events after that seq, then the live ones."""
        if refusal := malformed("chat_resume", args):
            return refusal
        turn_id, after = args[0].get("turn_id"), args[0].get("after_seq", -1)
        if isinstance(after, bool) or not isinstance(after, int) or after < -1:
            return refuse("invalid_request_error", "after_seq must be the seq of the last event received "
                                                   "(an integer, -1 for none)")
        turn = find(users.get(request.sid), turn_id)
        if turn is None:
            return refuse("turn_not_found", f"no turn {turn_id!r}: unknown, expired, or not yours")
        metrics.RESUMES.labels("socketio").inc()
        return attach(turn, after)

    @socketio.on("chat_cancel")
    def chat_cancel(*args):
        if refusal := malformed("chat_cancel", args):
            return refusal
        turn_id = args[0].get("turn_id")
        turn = find(users.get(request.sid), turn_id)
        if turn is None:
            return refuse("turn_not_found", f"no turn {turn_id!r}: unknown, expired, or not yours")
        cancelled = turn.running
        turn.cancel()
        return {"turn_id": turn_id, "cancelled": cancelled}

    @socketio.on("chat_approve")
    def chat_approve(*args):
        """{turn_id, tool_call_id, approved}: run or decline a call waiting for approval."""
        if refusal := malformed("chat_approve", args):
            return refusal
        fields = dict(args[0])
        turn_id = fields.pop("turn_id", None)
        turn = find(users.get(request.sid), turn_id)
        if turn is None:
            return refuse("turn_not_found", f"no turn {turn_id!r}: unknown, expired, or not yours")
        try:
            answer = parse(Approval, fields)
            approve(turn, answer.tool_call_id, answer.approved)
        except (ApiError, Refused) as err:
            return refuse(err.type, err.message)
        return {"turn_id": turn_id, "tool_call_id": answer.tool_call_id, "approved": answer.approved}

    @socketio.on("*")
    def unknown_event(event, *args):
        log.warning("unknown Socket.IO event %r from %s", str(event)[:100], request.sid)
        return refuse("unknown_event", f"unknown event {str(event)[:100]!r}: send chat_stream, chat_resume, "
                                       "chat_cancel or chat_approve")

    @socketio.on_error_default
    def failed(exc):
        if isinstance(exc, redis.RedisError):
            return refuse(*status_of(exc)[1:])
        log.exception("Socket.IO handler failed")
        return refuse("server_error", "internal server error; see the server log")

    @socketio.on("disconnect")
    def disconnect(*_):
        users.pop(request.sid, None)  # its followers detach; the turns go on
