"""Request models: validation errors become 400s that name the field and the problem."""
from __future__ import annotations

import json
from typing import Annotated, Literal

from flask import current_app, request
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from .errors import ApiError
from .providers.base import Tool

SessionId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def valid_unicode(value: str) -> str:
    """JSON can carry unpaired surrogates; no tokenizer can."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains invalid Unicode (an unpaired surrogate)")
    return value


Text = Annotated[str, AfterValidator(valid_unicode)]


def integral(value):
    """JSON Schema's integer includes 1.0; strict pydantic would refuse it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(integral)]


def within_cap(value: int, info: ValidationInfo) -> int:
    limit = info.context["settings"].max_tokens_cap
    if value > limit:
        raise ValueError(f"must be at most {limit}")
    return value


MaxTokens = Annotated[Int, Field(ge=1), AfterValidator(within_cap)]  # the document adds the cap as maximum
NON_BLANK = r"\S"  # in the document: a string with something other than spaces in it


def checked_text(value: str, limit: int) -> str:
    if len(value) > limit:
        raise ValueError(f"is {len(value)} characters; the limit is {limit}")
    return valid_unicode(value)


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



def describe(error: ValidationError) -> str:
    """One readable line per problem: `temperature: Input should be less than or equal to 2`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def json_body() -> dict:
    """The request's JSON object, or a 4xx saying why there is none."""
    if not request.mimetype == "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"expected Content-Type: application/json, got {request.mimetype or 'none'}")
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_request_error", f"body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request_error", f"body must be a JSON object, not {type(body).__name__}")
    return body


def parse(model: type[BaseModel], body: dict) -> BaseModel:
    try:
        return model.model_validate(body, context={"settings": current_app.config["RILL"]})
    except ValidationError as exc:
        raise ApiError(400, "invalid_request_error", describe(exc))


# --- /v1: the OpenAI- and Anthropic-compatible APIs. Unknown fields are ignored there, as the
# official SDKs send options we do not use; known ones are checked as strictly as above.

class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["text"]
    text: Text


Content = Text | list[TextPart]


def content_text(content: Content | None) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else "".join(p.text for p in content)


ToolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: ToolName
    description: str = ""
    parameters: dict = {"type": "object", "properties": {}}

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict) -> dict:
        if value.get("type", "object") != "object":
            raise ValueError("must be a JSON Schema of type object (the arguments are one JSON object)")
        return value


class OpenAITool(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["function"]
    function: FunctionSpec


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: ToolName
    arguments: str

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value or "{}")
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object, as text (the call's arguments)")
        return value


class OpenAIToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    id: Annotated[str, Field(min_length=1, max_length=200)]
    type: Literal["function"] = "function"
    function: FunctionCall


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: ToolName


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["function"]
    function: NamedFunction


def tools_and_choice(tools: list[Tool], choice: str) -> tuple[tuple[Tool, ...], str]:
    """Checked together: a named tool must be one of the tools, and a choice needs tools."""
    names = [t.name for t in tools]
    if choice not in ("auto", "none") and not tools:
        raise ValueError(f"tool_choice: {choice!r} needs tools")
    if choice not in ("auto", "none", "required") and choice not in names:
        raise ValueError(f"tool_choice: no tool named {choice!r} among the tools ({', '.join(names)})")
    return tuple(tools), choice


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content | None = None
    tool_calls: list[OpenAIToolCall] | None = None  # assistant
    tool_call_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None  # tool

    @model_validator(mode="after")
    def _tool_fields(self):
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class OpenAIChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra={"examples": [
        {"model": "local/smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hello!"}]},
        {"model": "local/smollm2-135m-instruct", "stream": True, "stream_options": {"include_usage": True},
         "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
         "max_tokens": 32, "temperature": 0, "stop": ["\n\n"], "seed": 1},
        {"model": "openai/gpt-4.1-mini", "messages": [{"role": "user", "content": "Weather in Paris?"}],
         "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
         "tool_choice": "auto"},
    ]})

    model: Annotated[str, Field(min_length=1, max_length=200)]
    messages: Annotated[list[OpenAIMessage], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    n: Annotated[Int, Field(ge=1, le=1)] = 1
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: Annotated[Int, Field(ge=0, le=2**63 - 1)] | None = None
    return_hidden_states: bool = False
    tools: Annotated[list[OpenAITool], Field(max_length=128)] = []
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice = "auto"

    @model_validator(mode="after")
    def _tools(self):
        choice = self.tool_choice if isinstance(self.tool_choice, str) else self.tool_choice.function.name
        tools = [Tool(t.function.name, t.function.description, t.function.parameters) for t in self.tools]
        self._checked = tools_and_choice(tools, choice)
        return self

    def internal_tools(self) -> tuple[Tool, ...]:
        return self._checked[0]

    def internal_tool_choice(self) -> str:
        return self._checked[1]


class AnthropicTool(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: ToolName
    description: str = ""
    input_schema: dict

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, value: dict) -> dict:
        return FunctionSpec._object_schema(value)


class AnthropicToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["auto", "any", "tool", "none"]
    name: ToolName | None = None

    @model_validator(mode="after")
    def _named(self):
        if (self.type == "tool") != (self.name is not None):
            raise ValueError("name goes with type tool, and only with it")
        return self


class ToolUseBlock(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["tool_use"]
    id: Annotated[str, Field(min_length=1, max_length=200)]
    name: ToolName
    input: dict


class ToolResultBlock(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["tool_result"]
    tool_use_id: Annotated[str, Field(min_length=1, max_length=200)]
    content: Content = ""
    is_error: bool = False


class ThinkingBlock(BaseModel):  # sent back in the history; the model does not see it again
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["thinking", "redacted_thinking"]


Block = Annotated[TextPart | ToolUseBlock | ToolResultBlock | ThinkingBlock, Field(discriminator="type")]


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["user", "assistant"]
    content: Text | list[Block]


class AnthropicRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra={"examples": [
        {"model": "local/smollm2-135m-instruct", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello!"}]},
        {"model": "local/smollm2-135m-instruct", "max_tokens": 64, "stream": True, "system": "Be brief.",
         "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "stop_sequences": ["."]},
        {"model": "openai/gpt-4.1-mini", "max_tokens": 256, "messages": [{"role": "user", "content": "Weather?"}],
         "tools": [{"name": "get_weather", "description": "Weather in a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
         "tool_choice": {"type": "auto"}},
    ]})

    model: Annotated[str, Field(min_length=1, max_length=200)]
    max_tokens: MaxTokens
    messages: Annotated[list[AnthropicMessage], Field(min_length=1)]
    system: Content | None = None
    stream: bool = False
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    stop_sequences: Annotated[list[str], Field(max_length=8)] = []
    return_hidden_states: bool = False
    tools: Annotated[list[AnthropicTool], Field(max_length=128)] = []
    tool_choice: AnthropicToolChoice | None = None

    @model_validator(mode="after")
    def _tools(self):
        tools = [Tool(t.name, t.description, t.input_schema) for t in self.tools]
        choice = self.tool_choice
        name = "auto" if choice is None else {"auto": "auto", "any": "required", "none": "none"}.get(choice.type,
                                                                                                  choice.name)
        self._checked = tools_and_choice(tools, name)
        return self

    def internal_tools(self) -> tuple[Tool, ...]:
        return self._checked[0]

    def internal_tool_choice(self) -> str:
        return self._checked[1]
