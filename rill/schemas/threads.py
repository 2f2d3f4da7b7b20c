"""Request models of /api/threads: threads and their messages, made of typed parts."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .common import SessionId, Text

Title = Annotated[Text, Field(min_length=1, max_length=200)]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text", "reasoning"]
    text: Annotated[Text, Field(max_length=100_000)]


class ToolCallPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["tool_call"]
    id: Annotated[str, Field(min_length=1, max_length=200)]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    arguments: Annotated[Text, Field(max_length=100_000)]


class ToolResultPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["tool_result"]
    tool_call_id: Annotated[str, Field(min_length=1, max_length=200)]
    content: Annotated[Text, Field(max_length=100_000)]


class FilePart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["file"]
    file_id: SessionId  # one of the user's uploads (POST /api/files)


Part = Annotated[TextPart | ToolCallPart | ToolResultPart | FilePart, Field(discriminator="type")]


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {}, {"title": "Rivers"}]})
    title: Title | None = None


class ThreadUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"title": "Rivers of Europe"}, {"current_leaf": "m-7"}, {"branch": "m-4"}]})
    title: Title | None = None
    current_leaf: SessionId | None = None  # the branch to show: the path to this message
    branch: SessionId | None = None  # the branch to show: the one through this message, down the remembered forks
    # The MCP servers (GET /api/mcp) whose tools the thread's turns use; [] for none.
    mcp_servers: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=64)] | None = None

    @model_validator(mode="after")
    def one_branch(self):
        if self.current_leaf is not None and self.branch is not None:
            raise ValueError("give current_leaf or branch, not both")
        return self


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{}, {"leaf": "m-7"}]})
    leaf: SessionId | None = None  # the end of the branch to copy; the current leaf when none


class ShareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{}, {"leaf": "m-7"}]})
    leaf: SessionId | None = None  # the end of the branch to share; the current leaf when none


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"parent_id": "m-1", "role": "user", "parts": [{"type": "text", "text": "Name a lake instead."}]}]})
    parent_id: SessionId | None = None  # none: a new root
    role: Literal["user", "assistant"]
    parts: Annotated[list[Part], Field(min_length=1, max_length=64)]


class MessageUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"parts": [{"type": "text", "text": "Name a river in Spain."}]}]})
    parts: Annotated[list[Part], Field(min_length=1, max_length=64)]
