"""OpenAI Responses API: POST /v1/responses, streamed or not, as one more encoding of a turn's
events; stored responses (`store`, the default) read back, continued, resumed, cancelled, deleted.

The encoding is a pure function of the response's first state and the turn's events: item ids come
from the turn's id and their place in the output, so the same log always gives the same events
with the same sequence numbers, on any worker: `GET /v1/responses/<id>?stream=true&starting_after=N`
is the turn's log encoded again, from after event N. A non-streamed response is the last state of
the same encoder. A stored response is kept by a reader of its own (`keep`), which writes its
last state when the turn ends; a background one runs on whoever reads it.
"""
from __future__ import annotations

import base64
import time
from itertools import chain

from flask import Blueprint, g, jsonify, request
from pydantic import TypeAdapter

from ..api.requests import inline_media, json_body, parse
from ..chat.events import StreamEvent
from ..chat.turn import Caller, Turn, start_stateless_turn
from ..conversations.inline import InlineMedia
from ..errors import failure_status
from ..extensions import chat_limit
from ..providers.base import ChatMessage, GenerationOptions, Image, ToolCall
from ..refusals import Refused
from ..runtime import spawn
from ..schemas.responses import FunctionCallItem, FunctionCallOutputItem, InputItem, MessageItem, ResponsesRequest
from ..services import Services, current
from . import openai_api
from .sse import PING, format_event, sse_response

bp = Blueprint("responses_api", __name__, url_prefix="/v1")
ERROR_CODES = {"rate_limit_error": "rate_limit_exceeded", "context_length_exceeded": "invalid_prompt"}
openai_api.openai_errors(bp)


ITEMS = TypeAdapter(list[InputItem])


def to_messages(instructions: str | None, items: list, media: InlineMedia) -> list[ChatMessage]:
    """The conversation the model sees: the instructions, then the items in order (a run of
    function calls joins the assistant message before it, as one turn of the model's)."""
    out = [ChatMessage("system", instructions)] if instructions else []
    for n, item in enumerate(items):
        where = f"input.{n}"
        if isinstance(item, MessageItem):
            text, images = content_of(item.content, media, where)
            if images and item.role != "user":
                raise Refused("invalid_request_error", f"{where}: images go in user messages, not {item.role} ones")
            out.append(ChatMessage("system" if item.role == "developer" else item.role, text, images=images))
        elif isinstance(item, FunctionCallItem):
            call = ToolCall(item.call_id, item.name, item.arguments or "{}")
            if out and out[-1].role == "assistant":
                last = out[-1]
                out[-1] = ChatMessage("assistant", last.content, (*last.tool_calls, call))
            else:
                out.append(ChatMessage("assistant", "", (call,)))
        elif isinstance(item, FunctionCallOutputItem):
            output = item.output if isinstance(item.output, str) else "".join(p.text for p in item.output)
            out.append(ChatMessage("tool", output, tool_call_id=item.call_id))
    return out


def content_of(content, media: InlineMedia, where: str) -> tuple[str, tuple[Image, ...]]:
    """A message's text (its documents' text first) and its images."""
    if isinstance(content, str):
        return content, ()
    documents, text, images = [], [], []
    for n, part in enumerate(content):
        what = f"{where}.content.{n}"
        if part.type in ("input_text", "output_text"):
            text.append(part.text)
        elif part.type == "input_image":
            images.append(media.image(what, url=part.image_url, detail=part.detail) if part.image_url else
                          media.document(what, "image", file_id=part.file_id))
        else:
            found = media.document(what, part.filename or "file", data=part.file_data, file_id=part.file_id)
            (images if isinstance(found, Image) else documents).append(found)
    return "\n\n".join([*documents, "".join(text)] if documents else text), tuple(images)


def skeleton(req: ResponsesRequest, turn: Turn) -> dict:
    """The response object before any output: what was asked, echoed as the API does."""
    choice = req.tool_choice if isinstance(req.tool_choice, str) else req.tool_choice.model_dump()
    return {
        "id": f"resp_{turn.id}", "object": "response", "created_at": int(time.time()), "status": "in_progress",
        "background": req.background, "error": None, "incomplete_details": None, "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens, "metadata": req.metadata or {}, "model": turn.model,
        "output": [], "parallel_tool_calls": req.parallel_tool_calls, "previous_response_id": req.previous_response_id,
        "safety_identifier": req.safety_identifier, "prompt_cache_key": req.prompt_cache_key,
        "service_tier": req.service_tier or "default", "store": req.store, "temperature": req.temperature,
        "text": req.text.model_dump(exclude_none=True, by_alias=True), "tool_choice": choice,
        "tools": [{"type": "function", "name": t.name, "description": t.description,
                   "parameters": t.parameters, "strict": bool(t.strict)} for t in req.tools],
        "top_p": req.top_p, "truncation": req.truncation,
        "reasoning": req.reasoning.model_dump() if req.reasoning else {"effort": None, "summary": None},
    } | ({"user": req.user} if req.user else {})  # usage comes with the end; null is no value of either


class ResponseEncoder:
    """A turn's events as the Responses stream: an output item opens when its kind of output
    begins (reasoning, text, a function call) and closes when another begins or the turn ends.
    `response` is the object as it stands; each event carries its `sequence_number`."""

    def __init__(self, response: dict, after: int = -1, encrypted: bool = False):
        self.response = response
        self.after = after  # the stream sends only the events after this sequence number
        # include: ["reasoning.encrypted_content"]: each reasoning item carries its text, opaque
        # (base64: Rill keeps no hidden reasoning, and reads none back), for a client that stores nothing
        self.encrypted = encrypted
        self.seq = 0
        self.open: dict | None = None  # the item being written

    def __call__(self, event: StreamEvent) -> bytes:
        if event.kind == "ping":
            return PING
        return b"".join(format_event(e, e["type"]) for e in self.events(event) if e["sequence_number"] > self.after)

    def events(self, event: StreamEvent) -> list[dict]:
        out: list[dict] = []
        kind, data = event.kind, event.data
        if kind == "start":
            self.emit(out, "response.created", response=self.snapshot())
            self.emit(out, "response.in_progress", response=self.snapshot())
        elif kind == "reasoning":
            self.part(out, "reasoning", "reasoning_text", data["reasoning"])
        elif kind == "token":
            self.part(out, "message", "output_text", data["token"])
        elif kind == "tool_call_start":
            self.close(out)
            self.add(out, {"id": self.item_id("fc"), "type": "function_call", "status": "in_progress",
                           "call_id": data["id"], "name": data["name"], "arguments": ""})
        elif kind == "tool_call_delta" and self.open is not None:
            self.open["arguments"] += data["arguments"]
            self.emit(out, "response.function_call_arguments.delta", item_id=self.open["id"],
                      output_index=self.index, delta=data["arguments"])
        elif kind == "tool_call_end":
            self.close(out)
        elif kind == "done":
            self.close(out)
            self.finish(out, data)
        elif kind == "error":
            self.close(out, "incomplete")
            error = data["error"]
            code = ERROR_CODES.get(error["type"], "server_error")  # the API's few codes; Rill's own type beside
            self.response.update(status="failed", error={"code": code, "message": error["message"],
                                                         "type": error["type"]})
            self.emit(out, "response.failed", response=self.snapshot())
        return out

    @property
    def index(self) -> int:
        return len(self.response["output"]) - 1

    def item_id(self, prefix: str) -> str:
        return f"{prefix}_{self.response['id'].removeprefix('resp_')}_{len(self.response['output'])}"

    def emit(self, out: list, type: str, **fields) -> None:
        out.append({"type": type, "sequence_number": self.seq, **fields})
        self.seq += 1

    def snapshot(self) -> dict:
        return {**self.response, "output": [dict(item) for item in self.response["output"]]}

    def add(self, out: list, item: dict) -> None:
        self.response["output"].append(item)
        self.open = item
        self.emit(out, "response.output_item.added", output_index=self.index, item=dict(item))

    def part(self, out: list, item_type: str, part_type: str, text: str) -> None:
        """Text into the open item of this type (opened, with its one content part, when needed)."""
        if self.open is None or self.open["type"] != item_type:
            self.close(out)
            prefix, item = ("msg", {"role": "assistant", "content": []}) if item_type == "message" else \
                ("rs", {"summary": [], "content": []})
            self.add(out, {"id": self.item_id(prefix), "type": item_type, "status": "in_progress", **item})
            part = {"type": part_type, "text": ""}
            if item_type == "message":
                part |= {"annotations": [], "logprobs": []}
            self.open["content"].append(part)
            self.emit(out, "response.content_part.added", item_id=self.open["id"], output_index=self.index,
                      content_index=0, part=dict(part))
        self.open["content"][0]["text"] += text
        extra = {"logprobs": []} if item_type == "message" else {}
        self.emit(out, f"response.{part_type}.delta", item_id=self.open["id"], output_index=self.index,
                  content_index=0, delta=text, **extra)

    def close(self, out: list, status: str = "completed") -> None:
        item, self.open = self.open, None
        if item is None:
            return
        where = {"item_id": item["id"], "output_index": self.index}
        if item["type"] == "function_call":
            self.emit(out, "response.function_call_arguments.done", **where, name=item["name"],
                      arguments=item["arguments"])
        else:
            part = item["content"][0]
            extra = {"logprobs": []} if part["type"] == "output_text" else {}
            self.emit(out, f"response.{part['type']}.done", **where, content_index=0, text=part["text"], **extra)
            self.emit(out, "response.content_part.done", **where, content_index=0, part=dict(part))
        item["status"] = status
        if self.encrypted and item["type"] == "reasoning":
            item["encrypted_content"] = base64.b64encode(item["content"][0]["text"].encode()).decode()
        self.emit(out, "response.output_item.done", output_index=self.index, item=dict(item))

    def finish(self, out: list, done: dict) -> None:
        used = done["usage"]
        self.response["usage"] = {
            "input_tokens": used["prompt_tokens"], "output_tokens": used["completion_tokens"],
            "total_tokens": used["prompt_tokens"] + used["completion_tokens"],
            "input_tokens_details": {"cached_tokens": used["cached_tokens"], "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}
        reason = done["finish_reason"]
        if reason == "length":
            self.response.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
        elif reason == "cancelled":
            self.response["status"] = "cancelled"
        else:  # from the turn's own figures, so that encoding the log again gives the same time
            self.response.update(status="completed",
                                 completed_at=self.response["created_at"] + round(done["duration_ms"] / 1000))
        final = "response.completed" if self.response["status"] == "completed" else "response.incomplete"
        self.emit(out, final, response=self.snapshot())


def first_state(response: dict) -> dict:
    """A stored response as it was before any output: where its events are encoded from again."""
    first = {**response, "status": "in_progress", "output": [], "error": None, "incomplete_details": None}
    first.pop("completed_at", None)
    first.pop("usage", None)
    return first


def replayed(response: dict, batches, encrypted: bool = False) -> dict:
    """The response after these batches of its turn's events, encoded from its first state."""
    encoder = ResponseEncoder(first_state(response), encrypted=encrypted)
    for event in chain.from_iterable(batches):
        encoder.events(event)
    return encoder.response


def keep(services: Services, turn: Turn, response: dict) -> None:
    """Read a stored response's turn to its end, and store its last state (a reader of its own:
    a background turn runs on while nobody else reads it)."""
    services.responses.update(replayed(response, turn.follow(keepalive=services.settings.keepalive_seconds)))


@bp.post("/responses")
@chat_limit
def create_response():
    rill = current()
    req = parse(ResponsesRequest, json_body())
    earlier = []  # the conversation before it: each earlier response's input and output
    if req.previous_response_id:
        for row in rill.responses.chain(req.previous_response_id, g.user, rill.settings.max_history_messages):
            earlier += ITEMS.validate_python([*row["input"], *now(row, to_end=True)["output"]])
    options = GenerationOptions(max_tokens=req.max_output_tokens or rill.settings.default_max_tokens,
                                temperature=req.temperature, top_p=req.top_p, tools=req.internal_tools(),
                                tool_choice=req.internal_tool_choice(), output_format=req.text.output_format())
    messages = to_messages(req.instructions, [*earlier, *req.input], inline_media(req.model))
    if earlier:  # a long chain's oldest messages are left out, as a long chat's are
        first = 1 if req.instructions else 0
        del messages[first:first + max(0, len(messages) - rill.settings.max_history_messages - 1)]
    turn = start_stateless_turn(rill, Caller(g.user, "responses", g.request_id), req.model, messages, options)
    response = skeleton(req, turn)
    if req.store:
        rill.responses.create(g.user, response, [item.model_dump(exclude_none=True) for item in req.input], turn.id)
        spawn(keep, rill, turn, response)
    if req.background and not req.stream:
        return jsonify(response)
    events = turn.follow(keepalive=rill.settings.keepalive_seconds)
    if req.stream:
        # A client that closes the stream wants the response stopped, unless it runs in the background.
        return sse_response(events, ResponseEncoder(first_state(response), encrypted=req.encrypted_reasoning),
                            on_close=None if req.background else turn.cancel, api="responses")
    final = replayed(response, events, req.encrypted_reasoning)
    if req.store:  # now, not when `keep` gets to it: the client may continue from it at once
        rill.responses.update(final)
    return answer(final)


def answer(response: dict):
    """A response as JSON; a failed one as the error it failed with."""
    if response["status"] != "failed":
        return jsonify(response)
    error = response["error"]
    status = failure_status(error["type"])
    return jsonify(openai_api.openai_error(status, error["type"], error["message"])), status


def stored(response_id: str) -> dict:
    row = current().responses.get(response_id, g.user)
    if row is None:
        raise Refused("response_not_found", f"no response {response_id!r} (unknown, deleted, not stored, "
                                            "or not yours)")
    return row


def now(row: dict, to_end: bool = False) -> dict:
    """A stored response as it stands (or, `to_end`, once its turn has ended): while it runs, from
    its turn's log; one whose turn was lost with a stopped server failed."""
    response = row["response"]
    if response["status"] != "in_progress":
        return response
    turn = current().turns.get(row["turn_id"], g.user)
    if turn is not None:
        return replayed(response, turn.follow(keepalive=current().settings.keepalive_seconds) if to_end
                        else [list(turn.log.events)])
    response = {**response, "status": "failed", "error": {
        "code": "server_error", "type": "interrupted",
        "message": "the server stopped while this response was being written"}}
    current().responses.update(response)
    return response


@bp.get("/responses/<response_id>")
def get_response(response_id: str):
    row = stored(response_id)
    stream, after = request.args.get("stream", "false"), request.args.get("starting_after")
    if stream not in ("true", "false") or (after is not None and not after.isdigit()):
        raise Refused("invalid_request_error", "stream must be true or false, and starting_after the sequence "
                                               "number of the last event received")
    if stream == "false":
        return jsonify(now(row))
    turn = current().turns.get(row["turn_id"], g.user)
    if turn is None:
        raise Refused("response_not_found", f"the events of response {response_id!r} are no longer kept (they are "
                                            "for RILL_TURN_RETENTION_SECONDS after it ends); GET it without stream")
    encoder = ResponseEncoder(first_state(row["response"]), after=int(after) if after else -1)
    return sse_response(turn.follow(keepalive=current().settings.keepalive_seconds), encoder, api="responses")


@bp.get("/responses/<response_id>/input_items")
def input_items(response_id: str):
    """A stored response's own input items (not its chain's), each with an id, a page at a time."""
    row = stored(response_id)
    limit, order, after = request.args.get("limit", "20"), request.args.get("order", "desc"), request.args.get("after")
    if not limit.isdigit() or not 1 <= int(limit) <= 100 or order not in ("asc", "desc"):
        raise Refused("invalid_request_error", "limit must be 1 to 100, and order asc or desc")
    items = [listed(item, f"{ITEM_PREFIX[item['type']]}_{response_id.removeprefix('resp_')}_in{n}")
             for n, item in enumerate(row["input"])]
    items = items[::-1] if order == "desc" else items
    start = next((n + 1 for n, item in enumerate(items) if item["id"] == after), None) if after else 0
    if start is None:
        raise Refused("invalid_request_error", f"after: no input item {after!r} in response {response_id!r}")
    page = items[start:start + int(limit)]
    return jsonify({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None, "has_more": start + len(page) < len(items)})


ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def listed(item: dict, item_id: str) -> dict:
    """An input item as the API lists it: with its id and status, a message's text as parts."""
    if item["type"] == "reasoning":
        return {"id": item_id, "type": "reasoning", "summary": []}
    if item["type"] != "message":
        return {**item, "id": item_id, "status": "completed"}
    parts = [{"type": "input_text", "text": item["content"]}] if isinstance(item["content"], str) else item["content"]
    if item["role"] == "assistant":  # an earlier answer sent back: an output message
        parts = [{"type": "output_text", "text": p.get("text", ""), "annotations": []} for p in parts]
    return {"id": item_id, "type": "message", "role": item["role"], "status": "completed", "content": parts}


@bp.post("/responses/<response_id>/cancel")
def cancel_response(response_id: str):
    row = stored(response_id)
    if not row["response"]["background"]:
        raise Refused("invalid_request_error", f"response {response_id!r} was not made with background: true; only "
                                               "a background response can be cancelled (close the stream instead)")
    turn = current().turns.get(row["turn_id"], g.user)
    if turn is not None and turn.running:
        turn.cancel()
    return jsonify(now(row, to_end=True))


@bp.delete("/responses/<response_id>")
def delete_response(response_id: str):
    row = stored(response_id)
    turn = current().turns.get(row["turn_id"], g.user)
    if turn is not None and turn.running:
        turn.cancel()
    current().responses.delete(response_id, g.user)
    return jsonify({"id": response_id, "object": "response", "deleted": True})
