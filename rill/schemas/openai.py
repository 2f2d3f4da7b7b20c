"""POST /v1/chat/completions: the OpenAI Chat Completions request."""
from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..providers.base import Tool
from ..providers.base import OutputFormat
from .common import (JSON_OBJECT, CheckedTools, Int, JsonObjectFormat, JsonSchemaFormat, MaxTokens, MediaContent,
                     ObjectSchema, TextFormat, ToolName, refused_fields, tools_and_choice)


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: ToolName
    description: str = ""
    parameters: ObjectSchema = {"type": "object", "properties": {}}
    strict: bool | None = None  # the call's arguments held to `parameters`


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


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: MediaContent | None = None
    tool_calls: list[OpenAIToolCall] | None = None  # assistant
    tool_call_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None  # tool

    @model_validator(mode="after")
    def _tool_fields(self):
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self


class JsonSchemaResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaResponseFormat, Field(discriminator="type")]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class OpenAIChatRequest(CheckedTools, BaseModel):
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
    response_format: ResponseFormat | None = None

    def output_format(self) -> OutputFormat | None:
        fmt = self.response_format
        if isinstance(fmt, JsonSchemaResponseFormat):
            return fmt.json_schema.internal("response_format.json_schema.schema")
        return JSON_OBJECT if isinstance(fmt, JsonObjectFormat) else None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data):
        refused_fields(data, {"logprobs": (None, False), "top_logprobs": (None, 0), "logit_bias": (None, {}),
                              "presence_penalty": (None, 0), "frequency_penalty": (None, 0),
                              "modalities": (None, ["text"]), "audio": (None,), "prediction": (None,),
                              "web_search_options": (None,), "functions": (None, []), "function_call": (None,)})
        return data

    @model_validator(mode="after")
    def _tools(self):
        choice = self.tool_choice if isinstance(self.tool_choice, str) else self.tool_choice.function.name
        tools = [Tool(t.function.name, t.function.description, t.function.parameters, bool(t.function.strict))
                 for t in self.tools]
        self._checked = tools_and_choice(tools, choice)
        return self
