"""The one event stream every transport maps to its own wire format: the table of a turn's
events, each with its typed payload.

Everything that names an event derives from EVENTS: the turn writes payloads, the app's SSE sends
their kind and data as they are, Socket.IO sends each under its `socketio` name, and the OpenAPI
document describes each payload from its dataclass (pydantic's JSON Schema of it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar, Literal

from ..providers.base import HiddenStates

Kind = Literal["start", "reasoning", "token", "tool_call_start", "tool_call_delta", "tool_call_end",
               "tool_approval_request", "tool_approval", "tool_result", "done", "error", "ping"]


FINAL = frozenset({"done", "error"})  # the kinds that end a turn


@dataclass  # not frozen, as the token's payload: made once a token, and frozen costs three times as much
class StreamEvent:
    kind: Kind
    data: dict
    turn_id: str
    seq: int  # position in the turn, from 0; pings carry the seq of the last real event

    @property
    def final(self) -> bool:
        return self.kind in FINAL


class Payload:
    """An event's data, as the log stores it and every transport sends it."""

    kind: ClassVar[str]
    socketio: ClassVar[str]  # its name on Socket.IO

    def as_data(self) -> dict:
        """A flat payload's fields as they are (made for every token: kept cheap)."""
        return dict(vars(self))


@dataclass(frozen=True)
class Start(Payload):
    """The turn began: its thread (null on /v1; session_id is the same id by its older name), the
    turn, the model, the question it answers (new, or asked again) and the id of the reply to come."""
    kind = "start"
    socketio = "chat_start"
    session_id: str | None
    thread_id: str | None
    turn_id: str
    model: str
    question_id: str | None
    reply_id: str | None


@dataclass
class Token(Payload):
    """New answer text (only the new text), and how many pieces so far."""
    kind = "token"
    socketio = "chat_token"
    token: str
    count: int


@dataclass(frozen=True)
class ReasoningText(Payload):
    """New thinking text, shown apart from the answer."""
    kind = "reasoning"
    socketio = "chat_reasoning"
    reasoning: str


@dataclass(frozen=True)
class ToolCallStart(Payload):
    """A tool call begins; `index` is its place among the reply's calls."""
    kind = "tool_call_start"
    socketio = "chat_tool_call_start"
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ToolCallDelta(Payload):
    """More of a call's JSON arguments, as text."""
    kind = "tool_call_delta"
    socketio = "chat_tool_call_delta"
    index: int
    arguments: str


@dataclass(frozen=True)
class ToolCallEnd(Payload):
    """The call is complete."""
    kind = "tool_call_end"
    socketio = "chat_tool_call_end"
    index: int


@dataclass(frozen=True)
class ToolApprovalRequest(Payload):
    """A call to an "ask first" server waits for the user to approve or decline it (POST
    /api/chat/turns/<id>/approve, Socket.IO chat_approve); a reader that comes back sees it again."""
    kind = "tool_approval_request"
    socketio = "chat_tool_approval_request"
    index: int  # the call's
    id: str  # the call's


@dataclass(frozen=True)
class ToolApproval(Payload):
    """The user's answer to an approval request (declined also when none came in time)."""
    kind = "tool_approval"
    socketio = "chat_tool_approval"
    index: int
    id: str
    approved: bool


@dataclass(frozen=True)
class ToolResult(Payload):
    """What a tool Rill ran (an MCP server's) answered, cut at RILL_MCP_OUTPUT_CHARS with a mark,
    or why it failed (`is_error`); the model's answer goes on from it."""
    kind = "tool_result"
    socketio = "chat_tool_result"
    index: int  # the call's
    id: str  # the call's
    content: str
    is_error: bool


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens whose cache another turn had already computed
    counted_by: Literal["rill"] | None = None  # the provider reported none: Rill counted them


@dataclass(frozen=True)
class Done(Payload):
    """The reply is complete (or was cancelled): its figures, all measured by the server."""
    kind = "done"
    socketio = "chat_complete"
    done: bool
    tokens: int  # completion tokens
    finish_reason: Literal["stop", "length", "stop_sequence", "tool_calls", "cancelled"]
    ttft_ms: float | None  # turn accepted to its first piece
    duration_ms: float  # turn accepted to its end
    tokens_per_second: float | None  # after the first token; null under two tokens
    usage: Usage
    stop_sequence: str | None = None  # the stop string that ended it
    hidden_states: HiddenStates | None = None  # asked for with return_hidden_states

    def as_data(self) -> dict:
        """Optional fields left at None are not sent."""
        data = asdict(self)
        for name in ("stop_sequence", "hidden_states"):
            if data[name] is None:
                del data[name]
        if self.usage.counted_by is None:
            del data["usage"]["counted_by"]
        return data


@dataclass(frozen=True)
class ErrorBody:
    type: str
    message: str


@dataclass(frozen=True)
class Error(Payload):
    """The turn failed: what went wrong, in words (the partial reply is kept)."""
    kind = "error"
    socketio = "chat_error"
    error: ErrorBody

    def as_data(self) -> dict:
        return asdict(self)


EVENTS: dict[str, type[Payload]] = {p.kind: p for p in (Start, ReasoningText, Token, ToolCallStart, ToolCallDelta,
                                                         ToolCallEnd, ToolApprovalRequest, ToolApproval, ToolResult,
                                                         Done, Error)}


def field_names(payload: type[Payload]) -> list[str]:
    return [f.name for f in fields(payload)]
