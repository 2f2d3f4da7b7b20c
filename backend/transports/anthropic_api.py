"""Anthropic-compatible API: POST /v1/messages (stream and not).

Streaming sends the full event sequence, each with an `event:` line (the anthropic SDK
dispatches on it): message_start, content_block_start, ping, content_block_delta...,
content_block_stop, message_delta, message_stop; failures as `event: error`.
`x-api-key` and `anthropic-version` headers are accepted (checked once auth is configured).
"""
from __future__ import annotations

import redis
from flask import Blueprint, g, jsonify

from .. import metrics, services
from werkzeug.exceptions import HTTPException

from ..chat.events import StreamEvent
from ..chat.turn import Turn, start_stateless_turn
from ..errors import ApiError, http_error_message, status_of
from ..extensions import chat_limit
from ..providers.base import ChatMessage, GenerationOptions, ProviderError
from ..refusals import Refused
from ..schemas import AnthropicRequest, content_text, json_body, parse
from .sse import PING, format_event, sse_response

bp = Blueprint("anthropic_api", __name__, url_prefix="/v1")

STOP_REASON = {"stop": "end_turn", "cancelled": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}


def anthropic_error(status: int, message: str) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


@bp.errorhandler(ApiError)
@bp.errorhandler(Refused)
@bp.errorhandler(ProviderError)
@bp.errorhandler(redis.RedisError)
def _refused(err):
    status, _, message = status_of(err)
    return jsonify(anthropic_error(status, message)), status


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):
    return jsonify(anthropic_error(err.code, http_error_message(err))), err.code


def message_object(turn: Turn, text: str | None, done: dict | None) -> dict:
    return {
        "id": f"msg_{turn.id}", "type": "message", "role": "assistant", "model": turn.model,
        "content": [{"type": "text", "text": text}] if text is not None else [],
        "stop_reason": STOP_REASON[done["finish_reason"]] if done else None,
        "stop_sequence": done.get("stop_sequence") if done else None,
        "usage": {"input_tokens": turn.prompt_tokens or 0, "output_tokens": done["tokens"] if done else 0,
                  "cache_read_input_tokens": done["usage"]["cached_tokens"] if done else 0},
    }


class EventEncoder:
    """Maps the turn's events to Anthropic's. message_start waits for the first token (or the
    end), when the prompt's size is known."""

    def __init__(self, turn: Turn):
        self.turn = turn
        self.opened = False

    def open(self) -> bytes:
        self.opened = True
        return (format_event({"type": "message_start", "message": message_object(self.turn, None, None)},
                             "message_start")
                + format_event({"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}}, "content_block_start")
                + format_event({"type": "ping"}, "ping"))

    def __call__(self, event: StreamEvent) -> bytes:
        if event.kind == "ping":
            return PING
        if event.kind == "error":
            error = self.turn.error
            return format_event(anthropic_error(error.status, error.message), "error")
        out = b"" if self.opened or event.kind == "start" else self.open()
        if event.kind == "token":
            out += format_event({"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": event.data["token"]}},
                                "content_block_delta")
        elif event.kind == "done":
            done = event.data
            delta = {"type": "message_delta",
                     "delta": {"stop_reason": STOP_REASON[done["finish_reason"]],
                               "stop_sequence": done.get("stop_sequence")},
                     "usage": {"input_tokens": done["usage"]["prompt_tokens"], "output_tokens": done["tokens"],
                               "cache_read_input_tokens": done["usage"]["cached_tokens"]}}
            if "hidden_states" in done:
                delta["hidden_states"] = done["hidden_states"]
            out += (format_event({"type": "content_block_stop", "index": 0}, "content_block_stop")
                    + format_event(delta, "message_delta")
                    + format_event({"type": "message_stop"}, "message_stop"))
        return out


@bp.post("/messages")
@chat_limit
def messages():
    req = parse(AnthropicRequest, json_body())
    chat = [ChatMessage("system", content_text(req.system))] if req.system else []
    chat += [ChatMessage(m.role, content_text(m.content)) for m in req.messages]
    options = GenerationOptions(
        max_tokens=req.max_tokens,
        temperature=req.temperature, top_p=req.top_p, stop=tuple(req.stop_sequences),
        hidden_states=req.return_hidden_states,
    )
    turn = start_stateless_turn(services(), req.model, chat, options, g.user, "anthropic", g.request_id)
    if req.stream:
        # An SDK client that closes the stream wants the reply stopped.
        events = turn.log.follow(keepalive=services().settings.keepalive_seconds)
        return sse_response(metrics.following("anthropic", events), EventEncoder(turn), on_close=turn.cancel)
    text, done = turn.collect()
    body = message_object(turn, text, done)
    if "hidden_states" in done:
        body["hidden_states"] = done["hidden_states"]
    return jsonify(body)
