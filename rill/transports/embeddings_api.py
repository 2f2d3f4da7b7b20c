"""OpenAI embeddings: POST /v1/embeddings. A local model's vectors are its final-layer states,
mean-pooled and normalised, run on its scheduler's thread between decoding steps; an upstream's
come from its own embeddings endpoint."""
from __future__ import annotations

import base64
import queue
import struct

from flask import Blueprint, jsonify

from ..api.requests import json_body, parse
from ..extensions import chat_limit
from ..providers.base import EmbedJob, Failure, ProviderError
from ..schemas.embeddings import EmbeddingsRequest
from ..services import current
from . import openai_api

bp = Blueprint("embeddings_api", __name__, url_prefix="/v1")
openai_api.openai_errors(bp)
WAIT_SECONDS = 600  # the scheduler always answers; this bounds a request behind a very long queue


@bp.post("/embeddings")
@chat_limit
def embeddings():
    rill = current()
    req = parse(EmbeddingsRequest, json_body())
    provider, model = rill.providers.resolve(req.model)
    job = EmbedJob(provider, model, req.inputs())
    rill.providers.submit(job)  # an unloaded local model loads, as for a turn
    try:
        result = job.channel.get(timeout=WAIT_SECONDS)
    except queue.Empty:
        raise ProviderError(f"no vectors within {WAIT_SECONDS} s: the model is busy", type="model_unavailable")
    if isinstance(result, Failure):
        raise result.error
    vectors = result.vectors
    if req.dimensions is not None and req.dimensions != len(vectors[0]):
        raise ProviderError(f"dimensions: {req.model} gives {len(vectors[0])}-dimensional vectors and cannot "
                            f"shorten them; leave dimensions out", type="invalid_request_error")
    return jsonify({
        "object": "list", "model": req.model,
        "data": [{"object": "embedding", "index": n, "embedding": encoded(v, req.encoding_format)}
                 for n, v in enumerate(vectors)],
        "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
    })


def encoded(vector: list[float], encoding_format: str):
    """The floats, or base64 of their little-endian float32 bytes (what the SDKs decode)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector
