"""POST /v1/messages: the Anthropic Messages request."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..providers.base import OutputFormat, Tool
from .common import (CheckedTools, Content, DocumentBlock, ImageBlock, MaxTokens, ObjectSchema, Text, TextPart,
                     ToolName, refused_fields, tools_and_choice)


class AnthropicTool(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: ToolName
    description: str = ""
    input_schema: ObjectSchema
    strict: bool | None = None  # the call's input held to `input_schema`


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


Block = Annotated[TextPart | ToolUseBlock | ToolResultBlock | ThinkingBlock | ImageBlock | DocumentBlock,
                  Field(discriminator="type")]


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["user", "assistant"]
    content: Text | list[Block]


class JsonOutputFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["json_schema"]
    schema_: Annotated[dict, Field(alias="schema")]


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    format: JsonOutputFormat | None = None


class AnthropicRequest(CheckedTools, BaseModel):
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
    output_config: OutputConfig | None = None  # structured outputs: `format`
    output_format: JsonOutputFormat | None = None  # the same, as the structured-outputs beta named it

    def internal_output_format(self) -> OutputFormat | None:
        fmt = self.output_format or (self.output_config and self.output_config.format)
        param = "output_format.schema" if self.output_format else "output_config.format.schema"
        return OutputFormat("json_schema", fmt.schema_, "output", param=param) if fmt else None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data):
        refused_fields(data, {"top_k": (None,), "thinking": (None, {"type": "disabled"}), "mcp_servers": (None, []),
                              "container": (None,)})
        return data

    @model_validator(mode="after")
    def _tools(self):
        if self.output_format and self.output_config and self.output_config.format:
            raise ValueError("output_format and output_config.format: send one (output_format is its older name)")
        tools = [Tool(t.name, t.description, t.input_schema, bool(t.strict)) for t in self.tools]
        choice = self.tool_choice
        name = "auto" if choice is None else {"auto": "auto", "any": "required", "none": "none"}.get(choice.type,
                                                                                                  choice.name)
        self._checked = tools_and_choice(tools, name)
        return self
