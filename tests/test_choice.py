"""Fast tier: which engine and device run a model (providers/local/choice.py)."""
import pytest

from backend.providers.base import ProviderError
from backend.providers.local import choice as local


def test_the_engine_is_llama_cpp_for_gguf_files_on_a_cpu_and_transformers_for_the_rest(tmp_path, monkeypatch):
    gguf, directory = tmp_path / "m.gguf", tmp_path / "m"
    monkeypatch.setattr(local, "llama_cpp_installed", lambda: True)
    monkeypatch.setattr(local, "llama_cpp_offloads", lambda: False)  # a CPU build (make setup's)
    on_gpu = local.pick_device("auto") != "cpu"  # auto: a GPU where there is one
    assert local.pick_engine("auto", gguf, "auto") == ("transformers" if on_gpu else "llamacpp")
    assert local.pick_engine("auto", gguf, "cpu") == "llamacpp"
    assert local.pick_engine("auto", gguf, "cuda") == "transformers"
    monkeypatch.setattr(local, "llama_cpp_offloads", lambda: True)  # built for CUDA or Metal
    assert local.pick_engine("auto", gguf, "cuda") == "llamacpp"
    assert local.pick_engine("auto", directory, "cpu") == "transformers"
    assert local.pick_engine("transformers", gguf, "cpu") == "transformers"
    with pytest.raises(ProviderError, match="runs GGUF files"):
        local.pick_engine("llamacpp", directory, "cpu")
    with pytest.raises(ProviderError, match="use one of auto, llamacpp, transformers"):
        local.pick_engine("vllm", gguf, "cpu")
    monkeypatch.setattr(local, "llama_cpp_installed", lambda: False)
    assert local.pick_engine("auto", gguf, "cpu") == "transformers"  # the fallback: converted once
    with pytest.raises(ProviderError, match="not installed"):
        local.pick_engine("llamacpp", gguf, "cpu")
