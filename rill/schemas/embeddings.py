"""POST /v1/embeddings: the OpenAI embeddings request. Unknown fields are refused: each one the
API has changes what comes back."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .common import Int, Text

MAX_INPUTS = 2048  # OpenAI's own limit per request
NonEmpty = Annotated[Text, Field(min_length=1)]
TokenIds = Annotated[list[Annotated[Int, Field(ge=0)]], Field(min_length=1)]


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"model": "local/smollm2-135m-instruct", "input": "The food was delicious."},
        {"model": "local/smollm2-135m-instruct", "input": ["first text", "second text"], "encoding_format": "base64"},
        {"model": "local/smollm2-135m-instruct", "input": [[9906, 1917], [15339]]},
    ]})

    model: Annotated[str, Field(min_length=1, max_length=200)]
    # A string, strings, token ids (one input), or lists of token ids (LangChain sends these).
    input: NonEmpty | Annotated[list[NonEmpty], Field(min_length=1, max_length=MAX_INPUTS)] | TokenIds | Annotated[
        list[TokenIds], Field(min_length=1, max_length=MAX_INPUTS)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[Int, Field(ge=1)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None  # taken; changes nothing

    def inputs(self) -> list:
        """Each input: a text, or a list of token ids."""
        if isinstance(self.input, str) or isinstance(self.input[0], int):
            return [self.input]
        return list(self.input)
