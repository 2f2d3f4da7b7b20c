"""POST /v1/responses: the OpenAI Responses request, as far as Rill runs it.

Unlike the older /v1 routes, an unknown top-level field is refused (400 naming it): the Responses
API's fields change what a response is (a built-in tool, a stored conversation, a schema), and a
client told 200 cannot tell that one was dropped. Fields that change nothing Rill does (metadata,
user, safety_identifier, prompt_cache_key, service_tier; client_metadata, taken only) are taken and echoed."""
from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from ..providers.base import OutputFormat, Tool
from .common import (JSON_OBJECT, CheckedTools, JsonObjectFormat, JsonSchemaFormat, MaxTokens, ObjectSchema, Text,
                     TextFormat, ToolName, tools_and_choice)

Loose = ConfigDict(extra="ignore", strict=True)  # an item a client echoes back may carry fields of OpenAI's own
CallId = Annotated[str, Field(min_length=1, max_length=200)]


class InputText(BaseModel):
    model_config = Loose
    type: Literal["input_text"]
    text: Text


class OutputText(BaseModel):  # an earlier answer, sent back as input
    model_config = Loose
    type: Literal["output_text"]
    text: Text


class InputImage(BaseModel):
    model_config = Loose
    type: Literal["input_image"]
    image_url: str | None = None  # a data: URL (or a URL the files layer refuses, saying why)
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] = "auto"

    @model_validator(mode="after")
    def _one_source(self):
        if (self.image_url is None) == (self.file_id is None):
            raise ValueError("an input_image needs image_url or file_id (one of them)")
        return self


class InputFile(BaseModel):
    model_config = Loose
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None


ContentPart = Annotated[InputText | OutputText | InputImage | InputFile, Field(discriminator="type")]


class MessageItem(BaseModel):
    model_config = Loose
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Text | list[ContentPart]


class FunctionCallItem(BaseModel):
    model_config = Loose
    type: Literal["function_call"]
    call_id: CallId
    name: ToolName
    arguments: Text


class FunctionCallOutputItem(BaseModel):
    model_config = Loose
    type: Literal["function_call_output"]
    call_id: CallId
    output: Text | list[InputText]


class ReasoningItem(BaseModel):
    """Earlier thinking sent back: taken and not shown to the model again (as OpenAI does for a
    model's own reasoning outside a tool-call loop)."""
    model_config = Loose
    type: Literal["reasoning"]


def item_type(value) -> str | None:
    """An item's type; a message may leave it out (the API's easy input message)."""
    return value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", None)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")] | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(item_type, custom_error_type="item_type",
                  custom_error_message="an input item of type message, function_call, function_call_output or "
                                       "reasoning (Rill runs no built-in tools and keeps no item references)")]


def as_items(value):
    """A string input is one user message."""
    return [{"role": "user", "content": value}] if isinstance(value, str) else value


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["function"]
    name: ToolName
    description: Text | None = None
    parameters: ObjectSchema | None = None
    strict: bool | None = None  # the call's arguments held to `parameters`


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["function"]
    name: ToolName


class JsonSchema(JsonSchemaFormat):
    type: Literal["json_schema"]


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    format: Annotated[TextFormat | JsonObjectFormat | JsonSchema, Field(discriminator="type")] = TextFormat(type="text")
    verbosity: Literal["low", "medium", "high"] | None = None  # only "medium", the model's own, is taken

    @field_validator("verbosity")
    @classmethod
    def _model_own(cls, value):
        if value not in (None, "medium"):
            raise ValueError(f"{value!r}: Rill's models write at their own length; leave it out or send medium")
        return value

    def output_format(self) -> OutputFormat | None:
        if isinstance(self.format, JsonSchema):
            return self.format.internal("text.format.schema")
        return replace(JSON_OBJECT, param="text.format") if isinstance(self.format, JsonObjectFormat) else None


class ReasoningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    effort: None = Field(None, description="Rill's models think as their chat template has them: leave it out")
    summary: Literal["auto"] | None = None  # the model's reasoning text is sent whole (there is no summary)


class ResponsesRequest(CheckedTools, BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"model": "local/smollm2-135m-instruct", "input": "Hello!"},
        {"model": "local/smollm2-135m-instruct", "instructions": "Be brief.", "stream": True, "store": False,
         "input": [{"role": "user", "content": [{"type": "input_text", "text": "Name a river."}]}],
         "max_output_tokens": 32, "temperature": 0},
        {"model": "openai/gpt-4.1-mini", "input": "Weather in Paris?", "tool_choice": "auto",
         "tools": [{"type": "function", "name": "get_weather", "description": "Weather in a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]},
    ]})

    model: Annotated[str, Field(min_length=1, max_length=200)]
    input: Annotated[list[InputItem], Field(min_length=1), BeforeValidator(as_items)]
    instructions: Text | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=128)] = []
    tool_choice: Literal["auto", "none", "required"] | NamedFunction = "auto"
    parallel_tool_calls: bool = True
    max_output_tokens: MaxTokens | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    stream: bool = False
    store: bool = True  # kept: GET /v1/responses/<id>, and previous_response_id continues from it
    previous_response_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    background: bool = False  # runs on without a reader; cancel it with POST .../cancel
    text: TextConfig = TextConfig()
    truncation: Literal["auto", "disabled"] = "disabled"
    # Taken and echoed; none changes what Rill does.
    metadata: Annotated[dict[str, Annotated[str, Field(max_length=512)]], Field(max_length=16)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    safety_identifier: Annotated[str, Field(max_length=256)] | None = None
    prompt_cache_key: Annotated[str, Field(max_length=256)] | None = None
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None
    client_metadata: Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=4096)]],
                               Field(max_length=32)] | None = None  # a client's own notes (Codex sends them)
    reasoning: ReasoningConfig | None = None
    include: list[Literal["reasoning.encrypted_content"]] = []

    @property
    def encrypted_reasoning(self) -> bool:
        return "reasoning.encrypted_content" in self.include

    @field_validator("tools", mode="before")
    @classmethod
    def _function_tools_only(cls, value):
        for n, tool in enumerate(value if isinstance(value, list) else ()):
            kind = tool.get("type") if isinstance(tool, dict) else "function"  # not an object: said below
            if kind != "function":
                raise ValueError(f"tools.{n}: a tool of type {kind!r} is a built-in tool Rill does not run; "
                                 "only function tools (type function), which the caller runs")
        return value

    @model_validator(mode="after")
    def _checked_together(self):
        if self.background and not self.store:
            raise ValueError("background: a background response must be stored (store: true), to be read later")
        choice = self.tool_choice if isinstance(self.tool_choice, str) else self.tool_choice.name
        tools = [Tool(t.name, t.description or "", t.parameters or {"type": "object", "properties": {}}, bool(t.strict))
                 for t in self.tools]
        self._checked = tools_and_choice(tools, choice)
        return self

