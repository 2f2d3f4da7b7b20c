"""Anthropic-compatible API: POST /v1/messages (stream and not).

Streaming sends the full event sequence, each with an `event:` line (the anthropic SDK
dispatches on it): message_start, then per block (thinking, text, or one tool_use per call)
content_block_start, content_block_delta..., content_block_stop (a ping after the first start),
then message_delta, message_stop; failures as `event: error`.
`x-api-key` and `anthropic-version` headers are accepted (checked once auth is configured).
"""
from __future__ import annotations

import json

import redis
from flask import Blueprint, g, jsonify

from werkzeug.exceptions import HTTPException

from ..api.requests import inline_media, json_body, parse
from ..chat.events import StreamEvent
from ..chat.turn import Caller, Collected, Turn, start_stateless_turn
from ..conversations.inline import InlineMedia
from ..errors import ApiError, failure_status, http_error_message, status_of
from ..extensions import chat_limit
from ..providers.base import ChatMessage, GenerationOptions, Image, ProviderError, ToolCall
from ..refusals import Refused
from ..schemas.anthropic import AnthropicRequest
from ..schemas.common import content_text
from ..services import current
from .sse import PING, format_event, sse_response

bp = Blueprint("anthropic_api", __name__, url_prefix="/v1")

STOP_REASON = {"stop": "end_turn", "cancelled": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence",
               "tool_calls": "tool_use"}
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


def tool_input(arguments: str) -> dict:
    """A tool call's arguments as the object Anthropic's `input` is (what a model wrote may not parse)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"_unparsed_arguments": arguments}
    return value if isinstance(value, dict) else {"_arguments": value}


def content_blocks(reply: Collected) -> list[dict]:
    blocks = [{"type": "thinking", "thinking": reply.reasoning, "signature": ""}] if reply.reasoning else []
    if reply.text or not reply.tool_calls:
        blocks.append({"type": "text", "text": reply.text})
    blocks += [{"type": "tool_use", "id": c["id"], "name": c["name"], "input": tool_input(c["arguments"])}
               for c in reply.tool_calls]
    return blocks


def message_object(turn: Turn, prompt_tokens: int, reply: Collected | None = None) -> dict:
    """The message: empty as message_start carries it (`prompt_tokens` known by then), or whole."""
    done = reply.done if reply else None
    return {
        "id": f"msg_{turn.id}", "type": "message", "role": "assistant", "model": turn.model,
        "content": content_blocks(reply) if reply else [],
        "stop_reason": STOP_REASON[done["finish_reason"]] if done else None,
        "stop_sequence": done.get("stop_sequence") if done else None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": done["tokens"] if done else 0,
                  "cache_read_input_tokens": done["usage"]["cached_tokens"] if done else 0},
    }


TOOL_EVENTS = ("tool_call_start", "tool_call_delta", "tool_call_end")


class EventEncoder:
    """Maps the turn's events to Anthropic's: message_start when the first piece (or the end)
    comes, when the prompt's size is known; then one content block per run of reasoning
    (`thinking`), text, or per tool call (`tool_use`), each opened and closed in turn.

    Anthropic's blocks follow one another, but an upstream's parallel calls may stream their
    fragments interleaved: while one call's block is open, what comes for another block waits in
    `queued` and goes out, in order, once that call has ended."""

    def __init__(self, turn: Turn):
        self.turn = turn
        self.opened = False
        self.block: str | None = None  # the open block's type
        self.call: int | None = None  # the turn's index of the call whose block is open
        self.queued: list[dict] = []  # blocks waiting for it: {"type", "parts"}, a call's with "start", "ended"
        self.index = -1

    @staticmethod
    def event(body: dict) -> bytes:
        return format_event(body, body["type"])

    def _open_message(self) -> bytes:
        self.opened = True
        return self.event({"type": "message_start", "message": message_object(self.turn, self.turn.prompt_tokens or 0)})

    def _close_block(self) -> bytes:
        if self.block is None:
            return b""
        self.block = self.call = None
        return self.event({"type": "content_block_stop", "index": self.index})

    def _open_block(self, block: dict) -> bytes:
        out = self._close_block()
        self.index += 1
        self.block = block["type"]
        out += self.event({"type": "content_block_start", "index": self.index, "content_block": block})
        return out + (self.event({"type": "ping"}) if self.index == 0 else b"")  # where Anthropic sends it

    def _delta(self, delta: dict) -> bytes:
        return self.event({"type": "content_block_delta", "index": self.index, "delta": delta})

    def _text(self, kind: str, text: str) -> bytes:
        """A piece of thinking or answer: into the open block of its kind, else a new one."""
        out = b""
        if self.block != kind:
            out += self._open_block({"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking"
                                    else {"type": "text", "text": ""})
        if kind == "thinking":
            return out + self._delta({"type": "thinking_delta", "thinking": text})
        return out + self._delta({"type": "text_delta", "text": text})

    def _tool_block(self, data: dict) -> bytes:
        out = self._open_block({"type": "tool_use", "id": data["id"], "name": data["name"], "input": {}})
        self.call = data["index"]
        return out

    def _drain(self) -> bytes:
        """The open call has ended: what waited for it goes out, up to a call still streaming."""
        out = b""
        while self.queued and self.call is None:
            item = self.queued.pop(0)
            if item["type"] == "tool_use":
                out += self._tool_block(item["start"])
                if item["parts"]:
                    out += self._delta({"type": "input_json_delta", "partial_json": "".join(item["parts"])})
                if item["ended"]:
                    out += self._close_block()
            else:
                out += self._text(item["type"], "".join(item["parts"]))
        return out

    def _wait(self, kind: str, data: dict) -> None:
        """An event for another block while a call's block is open."""
        if kind == "tool_call_start":
            self.queued.append({"type": "tool_use", "start": data, "parts": [], "ended": False})
            return
        if kind in ("tool_call_delta", "tool_call_end"):
            item = next(q for q in self.queued if q["type"] == "tool_use" and q["start"]["index"] == data["index"])
            if kind == "tool_call_end":
                item["ended"] = True
            else:
                item["parts"].append(data["arguments"])
            return
        block, text = ("thinking", data["reasoning"]) if kind == "reasoning" else ("text", data["token"])
        if self.queued and self.queued[-1]["type"] == block:
            self.queued[-1]["parts"].append(text)
        else:
            self.queued.append({"type": block, "parts": [text]})

    def __call__(self, event: StreamEvent) -> bytes:
        if event.kind == "ping":
            return PING
        if event.kind == "error":
            error = event.data["error"]
            return format_event(anthropic_error(failure_status(error["type"]), error["message"]), "error")
        out = b"" if self.opened or event.kind == "start" else self._open_message()
        data = event.data
        if self.call is not None and (event.kind in ("reasoning", "token") or
                                      event.kind in TOOL_EVENTS and data["index"] != self.call):
            self._wait(event.kind, data)
        elif event.kind == "reasoning":
            out += self._text("thinking", data["reasoning"])
        elif event.kind == "token":
            out += self._text("text", data["token"])
        elif event.kind == "tool_call_start":
            out += self._tool_block(data)
        elif event.kind == "tool_call_delta":
            out += self._delta({"type": "input_json_delta", "partial_json": data["arguments"]})
        elif event.kind == "tool_call_end":
            out += self._close_block() + self._drain()
        elif event.kind == "done":
            if self.index < 0:  # an empty reply still has its (empty) text block
                out += self._open_block({"type": "text", "text": ""})
            delta = {"type": "message_delta",
                     "delta": {"stop_reason": STOP_REASON[data["finish_reason"]],
                               "stop_sequence": data.get("stop_sequence")},
                     "usage": {"input_tokens": data["usage"]["prompt_tokens"], "output_tokens": data["tokens"],
                               "cache_read_input_tokens": data["usage"]["cached_tokens"]}}
            if "hidden_states" in data:
                delta["hidden_states"] = data["hidden_states"]
            out += self._close_block() + self.event(delta) + self.event({"type": "message_stop"})
        return out


def to_messages(req: AnthropicRequest, media: InlineMedia) -> list[ChatMessage]:
    """Anthropic's content blocks as the conversation: tool results become `tool` messages, a
    document its text above the message's text, images go with the message."""
    chat = [ChatMessage("system", content_text(req.system))] if req.system else []
    for n, m in enumerate(req.messages):
        if isinstance(m.content, str):
            chat.append(ChatMessage(m.role, m.content))
            continue
        documents, images = [], []
        for k, b in enumerate(m.content):
            what, source = f"messages.{n}.content.{k}", getattr(b, "source", None)
            if b.type == "image":
                images.append(media.image(what, url=source.url if source.type == "url" else None,
                                          data=source.data if source.type == "base64" else None))
            elif b.type == "document":
                found = media.document(what, b.title, data=source.data if source.type == "base64" else None,
                                       text=source.data if source.type == "text" else None,
                                       url=source.url if source.type == "url" else None)
                (images if isinstance(found, Image) else documents).append(found)
        text = "\n\n".join([*documents, "".join(b.text for b in m.content if b.type == "text")]) if documents \
            else "".join(b.text for b in m.content if b.type == "text")
        chat += [ChatMessage("tool", content_text(b.content), tool_call_id=b.tool_use_id)
                 for b in m.content if b.type == "tool_result"]
        calls = tuple(ToolCall(b.id, b.name, json.dumps(b.input)) for b in m.content if b.type == "tool_use")
        if images and m.role != "user":
            raise Refused("invalid_request_error", f"messages.{n}: images go in user messages, not {m.role} ones")
        if text or calls or images:
            chat.append(ChatMessage(m.role, text, calls, images=tuple(images)))
    return chat


@bp.post("/messages")
@chat_limit
def messages():
    req = parse(AnthropicRequest, json_body())
    options = GenerationOptions(
        max_tokens=req.max_tokens,
        temperature=req.temperature, top_p=req.top_p, stop=tuple(req.stop_sequences),
        hidden_states=req.return_hidden_states, tools=req.internal_tools(), tool_choice=req.internal_tool_choice(),
        output_format=req.internal_output_format(),
    )
    turn = start_stateless_turn(current(), Caller(g.user, "anthropic", g.request_id), req.model, to_messages(req, inline_media(req.model)),
                                options)
    if req.stream:
        # An SDK client that closes the stream wants the reply stopped.
        events = turn.follow(keepalive=current().settings.keepalive_seconds)
        return sse_response(events, EventEncoder(turn), on_close=turn.cancel, api="anthropic")
    reply = turn.collect()
    body = message_object(turn, reply.done["usage"]["prompt_tokens"], reply)
    if "hidden_states" in reply.done:
        body["hidden_states"] = reply.done["hidden_states"]
    return jsonify(body)
