"""A model made for embeddings (RILL_EMBEDDING_MODEL), served as the provider `embed`: a GGUF file
through llama.cpp's embedding mode, pooled as the file says (mean where it says nothing), or a
sentence-transformers directory through transformers, pooled as its 1_Pooling/config.json says.
Its vectors are normalised, as a chat model's pooled states are (LocalProvider.embed)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from ...runtime import real_queue
from ..base import EmbedJob, Embeddings, Failure, Job, ProviderError
from .contract import EMBEDDING_TOKENS

log = logging.getLogger(__name__)


def checked_inputs(inputs: list, encode: Callable[[str], list[int]], n_vocab: int, limit: int,
                   model: str) -> list[list[int]]:
    """Each input as token ids: texts tokenized by `encode`, ids checked against the vocabulary."""
    out = []
    for n, item in enumerate(inputs):
        ids = encode(item) if isinstance(item, str) else item
        where = f"input.{n}" if len(inputs) > 1 else "input"
        if not ids:
            raise ProviderError(f"{where}: empty; give text or token ids to embed", type="invalid_request_error")
        if len(ids) > limit:
            raise ProviderError(f"{where}: {len(ids)} tokens; {model} embeds at most {limit}",
                                type="context_length_exceeded")
        if outside := [t for t in ids if not 0 <= t < n_vocab]:
            raise ProviderError(f"{where}: token id {outside[0]} is not in {model}'s vocabulary (0-{n_vocab - 1})",
                                type="invalid_request_error")
        out.append(ids)
    return out


def answer(job: EmbedJob) -> None:
    """Run the job in this thread (the model's own): its Embeddings, or a Failure, on its channel."""
    try:
        job.channel.put(job.provider.embed(job.model, job.inputs))
    except ProviderError as exc:
        job.channel.put(Failure(exc))
    except Exception as exc:
        log.exception("embedding failed")
        job.channel.put(Failure(ProviderError(f"{job.provider.name}/{job.model} failed: {exc}")))


class GgufEmbedder:
    def __init__(self, path: Path, threads: int):
        import llama_cpp as C

        from .llama_cpp import Pooler, Vocab, init_llama_cpp, load_model

        init_llama_cpp()
        self.handle = load_model(path, gpu=False)
        vocab = C.llama_model_get_vocab(self.handle)
        self.tokenizer = Vocab(vocab)
        self.n_vocab = C.llama_vocab_n_tokens(vocab)
        self.limit = min(EMBEDDING_TOKENS, C.llama_model_n_ctx_train(self.handle))
        self.add_special = C.llama_vocab_get_add_bos(vocab)  # a BERT's [CLS] ... [SEP]
        self.pooler = Pooler(self.handle, threads, C.LLAMA_POOLING_TYPE_UNSPECIFIED)
        self.dimensions = self.pooler.size

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special=self.add_special)

    def vectors(self, inputs: list[list[int]]) -> list:
        return self.pooler.vectors(inputs)


class DirectoryEmbedder:
    """A sentence-transformers model: a transformers encoder, then its pooling (cls, mean, max or
    last token, from 1_Pooling/config.json; mean where there is none)."""

    def __init__(self, directory: Path, threads: int):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self.model = AutoModel.from_pretrained(str(directory)).eval()
        self.pooling = pooling_mode(directory)
        self.n_vocab = self.model.config.vocab_size
        self.limit = min(EMBEDDING_TOKENS, getattr(self.model.config, "max_position_embeddings", EMBEDDING_TOKENS))
        self.dimensions = self.model.config.hidden_size
        self.pad = self.tokenizer.pad_token_id or 0

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def vectors(self, inputs: list[list[int]]) -> list:
        import torch

        ids, mask = right_padded(inputs, self.pad)
        with torch.inference_mode():
            states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return pool(states, mask, self.pooling)


def right_padded(inputs: list[list[int]], pad: int, device="cpu"):
    """The inputs as one tensor padded after each, and the mask of their real tokens."""
    import torch

    width = max(map(len, inputs))
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in inputs], device=device)
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in inputs], device=device)
    return ids, mask


def pool(states, mask, mode: str = "mean") -> list:
    """Each input's token states (its real tokens only) as one normalised numpy vector."""
    import torch

    states = states.float()
    if mode == "cls":
        pooled = states[:, 0]
    elif mode == "lasttoken":
        pooled = states[torch.arange(len(states)), mask.sum(1) - 1]
    elif mode == "max":
        pooled = states.masked_fill(~mask[..., None].bool(), float("-inf")).amax(1)
    else:
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return list(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())


def pooling_mode(directory: Path) -> str:
    """cls | mean | max | lasttoken, as the sentence-transformers Pooling module's config names it."""
    modules = directory / "modules.json"
    entries = json.loads(modules.read_text()) if modules.exists() else []
    for entry in entries:
        if entry.get("type", "").endswith("Pooling"):
            config = json.loads((directory / entry["path"] / "config.json").read_text())
            for mode in ("cls_token", "mean_tokens", "max_tokens", "lasttoken"):
                if config.get(f"pooling_mode_{mode}"):
                    return mode.removesuffix("_token").removesuffix("_tokens")
    return "mean"


class EmbeddingProvider:
    """`embed/<name>`: answers /v1/embeddings in its own thread, one request at a time; it writes no replies."""

    name = "embed"
    passthrough = False

    def __init__(self, settings):
        self.path = Path(settings.embedding_model).expanduser()
        self.threads = settings.threads
        self.model_name = self.path.stem if self.path.is_file() else self.path.name
        self.state, self.error = "loading", ""
        self.embedder = None
        self.jobs = real_queue.SimpleQueue()  # EmbedJobs, then close()'s None

    def models(self) -> list[dict]:
        entry = {"id": self.model_name, "state": self.state, "embeddings": True}
        if self.embedder is not None:
            entry["dimensions"] = self.embedder.dimensions
        return [entry | ({"error": self.error} if self.error else {})]

    def unavailable(self) -> str | None:
        return None

    def refuses_tools(self, model: str, tool_choice: str) -> str | None:
        return self._no_replies(model)

    def refuses_schemas(self, model, options) -> str | None:
        return None

    def input_modalities(self, model: str) -> list[str]:
        return ["text"]

    def _no_replies(self, model: str) -> str:
        return f"embed/{model} is an embedding model: it writes no replies; ask POST /v1/embeddings"

    def load(self) -> None:
        try:
            if not self.path.exists():
                raise RuntimeError(f"RILL_EMBEDDING_MODEL: {self.path} does not exist")
            self.embedder = (GgufEmbedder if self.path.is_file() else DirectoryEmbedder)(self.path, self.threads)
            self.state = "ready"
        except Exception as exc:
            self.state, self.error = "error", str(exc)
            log.exception("loading the embedding model failed")

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            answer(job)

    def embed(self, model: str, inputs: list) -> Embeddings:
        if self.state != "ready":
            raise ProviderError(f"embed/{model} is not available: {self.error or self.state}", type="model_unavailable")
        e = self.embedder
        ids = checked_inputs(inputs, e.encode, e.n_vocab, e.limit, f"embed/{model}")
        return Embeddings([v.tolist() for v in e.vectors(ids)], sum(map(len, ids)))

    def submit(self, job: Job | EmbedJob) -> None:
        if isinstance(job, EmbedJob):
            self.jobs.put(job)
        else:
            job.channel.put(Failure(ProviderError(self._no_replies(job.model), type="invalid_request_error")))

    def status(self) -> dict | None:
        return None

    def close(self, reason: str) -> None:
        self.jobs.put(None)
