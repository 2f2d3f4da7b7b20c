"""OpenAI-compatible API: POST /v1/chat/completions (stream and not), GET /v1/models.

Errors: {"error": {"message", "type", "param", "code"}}, before the stream with an HTTP status,
mid-stream as a bare `data:` event (the openai SDK raises on it). No `id:` lines and no data-less
events here: the SDK json-decodes every event.
"""
from __future__ import annotations

import time

import redis
from flask import Blueprint, g, jsonify
from werkzeug.exceptions import HTTPException

from .. import __version__
from ..api.requests import inline_media, json_body, parse
from ..chat.events import StreamEvent
from ..chat.turn import Caller, Collected, Turn, start_stateless_turn
from ..conversations.inline import InlineMedia
from ..errors import ApiError, failure_status, http_error_message, status_of
from ..extensions import chat_limit
from ..providers.base import ChatMessage, GenerationOptions, Image, ProviderError, ToolCall
from ..refusals import Refused
from ..schemas.openai import OpenAIChatRequest
from ..services import current
from .sse import PING, encode_text, format_event, sse_response

bp = Blueprint("openai_api", __name__, url_prefix="/v1")

FINGERPRINT = f"rill-{__version__}"
FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "cancelled": "stop", "tool_calls": "tool_calls"}


def openai_error(status: int, code: str, message: str) -> dict:
    kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _refused(err):
    status, type, message = status_of(err)
    return jsonify(openai_error(status, type, message)), status


def _http_error(err: HTTPException):
    return jsonify(openai_error(err.code, err.name.lower().replace(" ", "_"), http_error_message(err))), err.code


def openai_errors(blueprint: Blueprint) -> None:
    """Every error of these routes in OpenAI's shape (this module's, and the Responses API's)."""
    for kind in (ApiError, Refused, ProviderError, redis.RedisError):
        blueprint.register_error_handler(kind, _refused)
    blueprint.register_error_handler(HTTPException, _http_error)


openai_errors(bp)


def to_options(req: OpenAIChatRequest) -> GenerationOptions:
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    return GenerationOptions(
        max_tokens=(req.max_completion_tokens or req.max_tokens
                    or current().settings.default_max_tokens),
        temperature=req.temperature, top_p=req.top_p, seed=req.seed, stop=stop,
        hidden_states=req.return_hidden_states, tools=req.internal_tools(), tool_choice=req.internal_tool_choice(),
        output_format=req.output_format(),
    )


def to_messages(req: OpenAIChatRequest, media: InlineMedia) -> list[ChatMessage]:
    out = []
    for n, m in enumerate(req.messages):
        text, images = content_of(m.content, media, f"messages.{n}")
        if images and m.role != "user":
            raise Refused("invalid_request_error", f"messages.{n}: images go in user messages, not {m.role} ones")
        out.append(ChatMessage("system" if m.role == "developer" else m.role, text,
                               tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ()),
                               m.tool_call_id, images=images))
    return out


def content_of(content, media: InlineMedia, where: str) -> tuple[str, tuple[Image, ...]]:
    """A message's text (its documents' text first, then its text parts) and its images."""
    if content is None or isinstance(content, str):
        return content or "", ()
    documents, text, images = [], [], []
    for n, part in enumerate(content):
        what = f"{where}.content.{n}"
        if part.type == "text":
            text.append(part.text)
        elif part.type == "image_url":
            images.append(media.image(what, url=part.image_url.url, detail=part.image_url.detail))
        else:
            found = media.document(what, part.file.filename, data=part.file.file_data, file_id=part.file.file_id)
            (images if isinstance(found, Image) else documents).append(found)
    return "\n\n".join([*documents, "".join(text)] if documents else text), tuple(images)


def message(reply: Collected) -> dict:
    """The assistant's message: its text, reasoning and tool calls (OpenAI's non-streamed shape)."""
    body = {"role": "assistant", "content": reply.text if reply.text or not reply.tool_calls else None,
            "refusal": None}
    if reply.reasoning:
        body["reasoning_content"] = body["reasoning"] = reply.reasoning
    if reply.tool_calls:
        body["tool_calls"] = [{"id": c["id"], "type": "function",
                               "function": {"name": c["name"], "arguments": c["arguments"]}} for c in reply.tool_calls]
    return body


def usage(done: dict) -> dict:
    prompt, completion = done["usage"]["prompt_tokens"], done["usage"]["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": done["usage"]["cached_tokens"]}}


def extras(done: dict) -> dict:
    return {"hidden_states": done["hidden_states"]} if "hidden_states" in done else {}


class ChunkEncoder:
    """Maps the turn's events to chat.completion.chunk events."""

    def __init__(self, turn: Turn, include_usage: bool):
        self.turn = turn
        self.include_usage = include_usage
        self.base = {"id": f"chatcmpl-{turn.id}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": turn.model, "system_fingerprint": FINGERPRINT}
        self.before_text, self.after_text = self._around_text()

    def chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> bytes:
        body = {**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                          "finish_reason": finish_reason}], **extra}
        if self.include_usage:
            body["usage"] = None
        return format_event(body)

    def _around_text(self) -> list[bytes]:
        """A token chunk before and after its text (encoded once: most events are tokens)."""
        mark = "\0text\0"
        return self.chunk({"content": mark}).split(encode_text(mark))

    def __call__(self, event: StreamEvent) -> bytes:
        if event.kind == "token":  # most events: the chunk around the text is the same each time
            return self.before_text + encode_text(event.data["token"]) + self.after_text
        if event.kind == "start":
            return self.chunk({"role": "assistant", "content": ""})
        if event.kind == "reasoning":  # both names in use: DeepSeek's and vLLM's / OpenRouter's
            return self.chunk({"reasoning_content": event.data["reasoning"], "reasoning": event.data["reasoning"]})
        if event.kind == "tool_call_start":
            d = event.data
            return self.chunk({"tool_calls": [{"index": d["index"], "id": d["id"], "type": "function",
                                               "function": {"name": d["name"], "arguments": ""}}]})
        if event.kind == "tool_call_delta":
            return self.chunk({"tool_calls": [{"index": event.data["index"],
                                               "function": {"arguments": event.data["arguments"]}}]})
        if event.kind == "tool_call_end":
            return b""
        if event.kind == "done":
            done = event.data
            out = self.chunk({}, FINISH[done["finish_reason"]], **extras(done))
            if self.include_usage:
                out += format_event({**self.base, "choices": [], "usage": usage(done)})
            return out + b"data: [DONE]\n\n"
        if event.kind == "error":
            error = event.data["error"]
            return format_event(openai_error(failure_status(error["type"]), error["type"], error["message"]))
        return PING


@bp.post("/chat/completions")
@chat_limit
def chat_completions():
    req = parse(OpenAIChatRequest, json_body())
    turn = start_stateless_turn(current(), Caller(g.user, "openai", g.request_id), req.model, to_messages(req, inline_media(req.model)),
                                to_options(req))
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        # An SDK client that closes the stream wants the reply stopped (what OpenAI's API does).
        return sse_response(turn.follow(keepalive=current().settings.keepalive_seconds),
                            ChunkEncoder(turn, include_usage), on_close=turn.cancel, api="openai")
    reply = turn.collect()
    return jsonify({
        "id": f"chatcmpl-{turn.id}", "object": "chat.completion", "created": int(time.time()),
        "model": turn.model, "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": message(reply),
                     "logprobs": None, "finish_reason": FINISH[reply.done["finish_reason"]]}],
        "usage": usage(reply.done), **extras(reply.done),
    })


@bp.get("/models")
def models():
    listing = current().providers.listing()
    created = int(time.time())
    return jsonify({"object": "list", "data": [
        {"id": m["id"], "object": "model", "created": created, "owned_by": p["name"],
         "input_modalities": m["input_modalities"]}
        for p in listing["providers"] for m in p["models"]]})
