"""What the scheduler and the rows need of an engine (llama.cpp, transformers): a Model that
tokenizes and makes Batches, and a Batch that steps its rows together."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .row import Row


@dataclass
class Media:
    """A prompt's images, for a vision model: what its engine needs of them (transformers: the
    processor's tensors; llama.cpp: where each image chunk goes), and the prompt's ids as a prefix
    cache knows them, each image's tokens replaced by a number from that image's hash (the same
    text with another image shares nothing past the image)."""

    inputs: dict
    key: list[int]


def image_mark(sha256: str) -> int:
    """What stands in a Media key for each token of an image: a negative number from its hash,
    never a token id, and another image's never the same."""
    return -1 - int(sha256[:15], 16)


EMBEDDING_TOKENS = 2048  # the longest input /v1/embeddings takes (its context is made for this many)


class Tokenizer(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...


class Model(Protocol):
    engine: str  # "llama.cpp" | "transformers"
    tokenizer: Tokenizer
    stop_ids: set[int]  # tokens that end a reply
    n_vocab: int  # token ids are below it
    layers: int
    context_tokens: int  # the window a prompt and its reply must fit in
    template_source: str  # the chat template's text (tools are offered only where it has them)
    reads_images: bool  # a vision model: a prompt's images go in with its tokens
    grammar_tokenizer: object  # llguidance's view of the vocabulary, made with the first JSON reply

    def load(self) -> None: ...

    def unload(self) -> None:
        """Frees what load() took (RILL_MAX_LOADED_MODELS); load() may run again later."""

    def describe(self) -> dict:
        """{"engine", "device", "dtype"} for /api/models (llama.cpp adds "kv_cache")."""

    def set_template(self, source: str) -> None: ...

    def chat_tokens(self, chat: list[dict], tools: list[dict] | None = None) -> list[int]:
        """The chat template applied, with the generation prompt: the prompt's token ids."""

    def chat_media(self, chat: list[dict], tools: list[dict] | None, images: list) -> tuple[list[int], Media]:
        """The same for a chat with images (a model that reads_images): the ids with each image's
        tokens in place, and what the images become."""

    def new_batch(self, max_rows: int) -> Batch: ...

    def pooled(self, inputs: list[list[int]]) -> list:
        """Each input's final-layer states, mean-pooled and normalised (numpy vectors); inputs of
        at most EMBEDDING_TOKENS tokens, run together."""


class Batch(Protocol):
    rows: list[Row]  # every row in the batch, decoding or still prefilling (or a finished chat's, closing)
    guesses: tuple[int, int]  # the last step's guessed tokens, and how many of them held (speculation.py)

    def can_admit(self, row: Row, newcomers: list[Row]) -> bool:
        """Whether `row` may join now, beside the rows already running and those joining with it."""

    def add(self, rows: list[Row]) -> None:
        """Rows join: their prompts are prefilled now or a slice per step."""

    def step(self) -> None:
        """One forward pass: a token for every decoding row (row.accept), prompt slices for the rest."""

    def drop_done(self) -> None:
        """Finished rows leave and free their cache (a finished conversation may be kept first)."""

    def close(self) -> None: ...
