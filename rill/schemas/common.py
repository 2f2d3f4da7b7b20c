"""What every protocol's request models share: checked text, integers, token caps, content
parts, tools. Validation errors become 400s that name the field (api/requests.py)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from ..providers.base import OutputFormat, Tool

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


# /v1 (the OpenAI- and Anthropic-compatible APIs): unknown fields are ignored there, as the
# official SDKs send options Rill does not use; known ones are checked as strictly as the app's.


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["text"]
    text: Text


Content = Text | list[TextPart]


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    url: Annotated[str, Field(min_length=1)]
    detail: Literal["auto", "low", "high"] | None = None  # passed to upstreams that take it


class ImageUrlPart(BaseModel):  # OpenAI
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["image_url"]
    image_url: ImageUrl


class FileData(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    file_data: str | None = None  # base64, or a data: URL
    file_id: str | None = None  # a Rill upload (POST /api/files)
    filename: Annotated[str, Field(max_length=255)] = "document"

    @model_validator(mode="after")
    def _one(self):
        if (self.file_data is None) == (self.file_id is None):
            raise ValueError("give file_data (base64) or file_id (an upload's id), one of them")
        return self


class FilePart(BaseModel):  # OpenAI
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["file"]
    file: FileData


MediaContent = Text | list[Annotated[TextPart | ImageUrlPart | FilePart, Field(discriminator="type")]]


class MediaSource(BaseModel):  # Anthropic's image and document sources
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["base64", "url", "text"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ImageBlock(BaseModel):  # Anthropic
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["image"]
    source: MediaSource


class DocumentBlock(BaseModel):  # Anthropic
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["document"]
    source: MediaSource
    title: Annotated[str, Field(max_length=255)] = "document"


def content_text(content: Content | None) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else "".join(p.text for p in content)


def refused_fields(data, unsupported: dict) -> None:
    """Fields of an API that would change the reply in ways Rill does not do: a 400 naming each one
    asked for (`unsupported`: field -> the values that ask for nothing), never a silent drop."""
    if isinstance(data, dict):
        asked = [name for name, idle in unsupported.items() if name in data and data[name] not in idle]
        if asked:
            raise ValueError(f"{', '.join(asked)}: not supported by Rill (the reply would not be what it asks for); "
                             f"leave {'it' if len(asked) == 1 else 'them'} out")


ToolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
FormatName = ToolName  # a response format's name: the same letters, up to 64


class JsonSchemaFormat(BaseModel):
    """OpenAI's json_schema format (flattened into `text.format` by the Responses API)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: FormatName
    description: Text = ""
    schema_: Annotated[dict, Field(alias="schema")] = {}  # `schema` would shadow pydantic's own
    strict: bool | None = None

    def internal(self, param: str) -> OutputFormat:
        return OutputFormat("json_schema", self.schema_, self.name, self.description, bool(self.strict), param)


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["json_object"]


JSON_OBJECT = OutputFormat("json_object")  # any JSON object


def object_schema(value: dict) -> dict:
    """A tool's parameters: a JSON Schema of type object (the arguments are one JSON object)."""
    if value.get("type", "object") != "object":
        raise ValueError("must be a JSON Schema of type object (the arguments are one JSON object)")
    return value


ObjectSchema = Annotated[dict, AfterValidator(object_schema)]


class CheckedTools:
    """A request whose tools and tool_choice its validator checked together (into `_checked`)."""

    def internal_tools(self) -> tuple[Tool, ...]:
        return self._checked[0]

    def internal_tool_choice(self) -> str:
        return self._checked[1]


def tools_and_choice(tools: list[Tool], choice: str) -> tuple[tuple[Tool, ...], str]:
    """Checked together: a named tool must be one of the tools, and a choice needs tools."""
    names = [t.name for t in tools]
    if choice not in ("auto", "none") and not tools:
        raise ValueError(f"tool_choice: {choice!r} needs tools")
    if choice not in ("auto", "none", "required") and choice not in names:
        raise ValueError(f"tool_choice: no tool named {choice!r} among the tools ({', '.join(names)})")
    return tuple(tools), choice
