"""The provider contract: given messages and options, yield text pieces (and any reasoning and
tool call parts), then one Finish.

A provider's `stream` is plain blocking code that runs off the event loop (streamed.py), and
nothing stops it from outside: it must look at `cancel` before each step and stop promptly. What
a turn reads back is typed: Prompt, Piece | Reasoning | ToolCallPart..., then Finish or Failure.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator, Protocol

from ..runtime import Channel, real_threading


@dataclass(frozen=True)
class ToolCall:
    """A call the assistant made, as the conversation carries it."""

    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class Image:
    """An image a message shows the model: its encoded bytes (PNG, JPEG, WebP or GIF), verified to
    decode. Its hash names it to a prefix cache, so that another image never reuses its cells."""

    data: bytes
    media_type: str
    name: str = "an image"  # its file's name, or where in the request it was: for messages
    detail: str | None = None  # OpenAI's image_url detail (auto | low | high), for the upstreams that take it

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode()}"


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system | user | assistant | tool
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # assistant: the calls it made
    tool_call_id: str | None = None  # tool: the call this is the result of
    name: str | None = None  # tool: the called function's name (Gemini needs it)
    images: tuple[Image, ...] = ()  # user: shown to the model before the text


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})  # JSON Schema
    strict: bool = False  # its calls' arguments held to `parameters` (on the local engines, while decoding)


@dataclass(frozen=True)
class OutputFormat:
    """The reply must be one JSON value valid against `schema` (any object, for json_object):
    held to it while it is decoded on the local engines, sent on to an upstream."""

    kind: str  # json_object | json_schema
    schema: dict = field(default_factory=lambda: {"type": "object"})
    name: str = "response"
    description: str = ""
    strict: bool = True  # what the caller asked; Rill's local engines hold every schema strictly
    param: str = "response_format"  # where the request gave it, for errors


@dataclass(frozen=True)
class GenerationOptions:
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()  # end the reply before any of these strings
    hidden_states: bool = False  # put the last token's final-layer hidden state in Finish.hidden_states
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"  # auto | none | required | the name of the one tool to call
    output_format: OutputFormat | None = None  # a JSON reply, held to a schema


@dataclass(frozen=True)
class Prompt:
    """Yielded once before the first piece by providers that know the prompt's size up front."""

    tokens: int


@dataclass(frozen=True)
class Reasoning:
    """Thinking the model shows before (or between) its answer's pieces."""

    text: str


@dataclass(frozen=True)
class ToolCallPart:
    """A fragment of the tool call at `index`: the first one has its id and name; `arguments`
    fragments join into the call's JSON arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class HiddenStates:
    """The final layer's output at the position that produced the reply's last token."""

    layer: int
    dimension: int
    token_id: int
    values: list[float]


@dataclass(frozen=True)
class Finish:
    reason: str  # stop | length | cancelled | stop_sequence | tool_calls
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens whose cache another turn had already computed
    stop_sequence: str | None = None  # the stop string that ended the reply
    hidden_states: HiddenStates | None = None  # when the options asked for them
    counted: bool = False  # the token figures are Rill's count: the provider reported none


@dataclass(frozen=True)
class Piece:
    text: str


class ProviderError(Exception):
    """A model or upstream failure, reported to the client as an `error` event. Its type says what
    failed, without HTTP (errors.py maps each type to a status):
    upstream_error     an upstream server failed, or could not be reached
    model_error        a model failed while writing
    model_unavailable  the model is not loaded, or cannot be
    context_length_exceeded, invalid_request_error   the request cannot be served as it is
    interrupted        the server shut down while the reply was being written"""

    REQUEST_FAULTS = ("context_length_exceeded", "invalid_request_error")

    def __init__(self, message: str, type: str = "model_error"):
        super().__init__(message)
        self.message = message
        self.type = type

    @property
    def request_fault(self) -> bool:
        """The request could not be served as it is; the provider itself did not fail."""
        return self.type in self.REQUEST_FAULTS


@dataclass(frozen=True)
class Failure:
    error: ProviderError


Item = Prompt | Piece | Reasoning | ToolCallPart | Finish | Failure  # a job's channel; Finish or Failure last


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class Job:
    """One turn's work for a provider: it answers on `channel` (Prompt, Piece..., then Finish or
    Failure) and stops within a step of `cancel` being set."""

    provider: Provider
    model: str
    messages: list[ChatMessage]
    options: GenerationOptions
    channel: Channel = field(default_factory=Channel)
    cancel: real_threading.Event = field(default_factory=real_threading.Event)


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]  # one per input, in order
    tokens: int  # in all the inputs


@dataclass
class EmbedJob:
    """Inputs to embed (texts, or token ids): answered on `channel` with Embeddings or a Failure."""

    provider: Provider
    model: str
    inputs: list  # of str, or of token id lists
    channel: Channel = field(default_factory=Channel)


class Provider(Protocol):
    """Every provider has this whole interface. Upstream providers write only `stream` (plus
    models, unavailable, load) and get the rest from streamed.Streamed; the local model schedules
    its jobs itself (continuous batching) behind the same submit/run/status/close."""

    name: str  # the prefix of its model names: `name/model`
    passthrough: bool  # True: any `name/model` is sent on (an upstream knows its own models)

    def models(self) -> list[dict]:
        """[{"id": "<name>", "state": "loading|ready|error", ...}]"""

    def unavailable(self) -> str | None:
        """Why requests cannot be served at all (say, a missing API key), or None."""

    def refuses_tools(self, model: str, tool_choice: str) -> str | None:
        """Why this model cannot be given tools with this tool_choice, or None when it can."""

    def refuses_schemas(self, model: str, options: GenerationOptions) -> str | None:
        """Why this model cannot hold a reply to options.output_format and its strict tools, or None."""

    def input_modalities(self, model: str) -> list[str]:
        """What this model reads: ["text"], or ["text", "image"]."""

    def load(self) -> None:
        """Slow preparation, run once in the provider's own OS thread when the server starts."""

    def run(self) -> None:
        """Then, in that same thread: the provider's scheduler loop, if it has one."""

    def submit(self, job: Job) -> None:
        """Take a job: its channel gets Prompt, Piece..., then Finish or Failure."""

    def embed(self, model: str, inputs: list) -> Embeddings:
        """Vectors for these inputs; raise ProviderError. Upstreams run it as they run a stream; the
        local model's scheduler runs its EmbedJobs between steps (embedding.py)."""

    def status(self) -> dict | None:
        """{"busy", "running", "queued"} for a provider that schedules its own jobs."""

    def close(self, reason: str) -> None:
        """The provider is being dropped (it could not load): answer what it holds with `reason`."""

    def stream(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions, cancel: CancelToken
    ) -> Iterator[str | Prompt | Reasoning | ToolCallPart | Finish]:
        """Yield text pieces (and reasoning, tool call parts) as they are produced, then exactly
        one Finish; raise ProviderError."""
