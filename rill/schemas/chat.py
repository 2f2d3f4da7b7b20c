"""The app's own chat request (POST /api/chat, /api/chat/stream, Socket.IO chat_stream)."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .common import NON_BLANK, Int, MaxTokens, SessionId, checked_text


MAX_FILES = 10


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"message": "Hello!"},
        {"message": "Write a haiku about rivers.", "system": "You are a poet.", "temperature": 0.2,
         "max_tokens": 64, "top_p": 0.9, "seed": 7, "model": "local/smollm2-135m-instruct"},
        {"message": "And in French?", "thread_id": "th-1"},  # a follow-up, under the thread's current leaf
        {"message": "Name a lake instead.", "thread_id": "th-1", "parent_id": "m-1"},  # an edit: a new branch
        {"thread_id": "th-1", "parent_id": "m-2"},  # regenerate: another reply to question m-2
    ]})

    # No message: a new reply to the question `parent_id` (regenerate).
    message: Annotated[str, Field(min_length=1, pattern=NON_BLANK)] | None = None  # the validator says why
    thread_id: SessionId | None = None
    session_id: SessionId | None = None  # thread_id's older name
    # With a message: where the question goes (absent: under the thread's current leaf; null: a new
    # root, an edit of the first question). Without one: the question to answer again.
    parent_id: SessionId | None = None
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    system: str | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.7
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    max_tokens: MaxTokens | None = None
    seed: Annotated[Int, Field(ge=0, le=2**63 - 1)] | None = None
    return_hidden_states: bool = False
    replace_turn: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    # Chosen by the client, so it can cancel or resume the turn before the first byte arrives.
    turn_id: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = None
    # Uploads (POST /api/files) that go with the message.
    files: Annotated[list[SessionId], Field(min_length=1, max_length=MAX_FILES)] | None = None
    # MCP servers (GET /api/mcp) whose tools the model may call, Rill running them, or `server/tool`
    # for one of a server's tools; [] for none.
    mcp_servers: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=64)] | None = None

    @field_validator("message", mode="before")
    @classmethod
    def _message(cls, value, info: ValidationInfo):
        if not isinstance(value, str):
            return value  # the type check says so
        if not value.strip():
            raise ValueError("must not be empty")
        return checked_text(value, info.context["settings"].max_message_chars)

    @model_validator(mode="after")
    def _where(self):
        if self.thread_id and self.session_id and self.thread_id != self.session_id:
            raise ValueError("thread_id and session_id name one thread (session_id is its older name): send one")
        thread = self.thread_id or self.session_id
        if self.replace_turn and not thread:
            raise ValueError("replace_turn needs the thread_id (or session_id) of the thread that holds that turn")
        if "parent_id" in self.model_fields_set and not thread:
            raise ValueError("parent_id needs the thread_id of the thread that holds it")
        if self.message is None and not self.parent_id:
            raise ValueError("message: Field required (without one, parent_id names the question to answer again)")
        if self.files and self.message is None:
            raise ValueError("files go with a message: send the question with them")
        if self.message is None and self.replace_turn:
            raise ValueError("replace_turn asks its question again with a message; to answer a question again, "
                             "send its id as parent_id")
        return self

    @field_validator("system")
    @classmethod
    def _system(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else checked_text(value, info.context["settings"].max_system_chars)


class Approval(BaseModel):
    """The answer to a tool call waiting for approval (a `tool_approval_request` event)."""
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"tool_call_id": "call_0a1b2c", "approved": True}]})
    tool_call_id: str = Field(min_length=1, max_length=200)
    approved: bool
