"""The app's own chat request (POST /api/chat, /api/chat/stream, Socket.IO chat_stream)."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .common import NON_BLANK, Int, MaxTokens, SessionId, checked_text


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"message": "Hello!"},
        {"message": "Write a haiku about rivers.", "system": "You are a poet.", "temperature": 0.2,
         "max_tokens": 64, "top_p": 0.9, "seed": 7, "model": "local/smollm2-135m-instruct"},
        {"message": "Again, shorter.", "session_id": "s-1", "replace_turn": "t-1"},  # regenerate
    ]})

    message: Annotated[str, Field(min_length=1, pattern=NON_BLANK)]  # the validator says why, see below
    session_id: SessionId | None = None
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

    @field_validator("message", mode="before")
    @classmethod
    def _message(cls, value, info: ValidationInfo):
        if not isinstance(value, str):
            return value  # the type check says so
        if not value.strip():
            raise ValueError("must not be empty")
        return checked_text(value, info.context["settings"].max_message_chars)

    @model_validator(mode="after")
    def _replace_needs_session(self):
        if self.replace_turn and not self.session_id:
            raise ValueError("replace_turn needs the session_id of the session that holds that turn")
        return self

    @field_validator("system")
    @classmethod
    def _system(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else checked_text(value, info.context["settings"].max_system_chars)
