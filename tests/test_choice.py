"""Fast tier: which engine and device run a model (providers/local/choice.py)."""
import pytest

from rill.providers.base import ProviderError
from rill.providers.local import choice as local


def test_the_engine_is_llama_cpp_for_gguf_files_on_a_cpu_and_transformers_for_the_rest(tmp_path, monkeypatch):
    gguf, directory = tmp_path / "m.gguf", tmp_path / "m"
    monkeypatch.setattr(local, "installed", lambda module: True)
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
    monkeypatch.setattr(local, "installed", lambda module: module != "llama_cpp")
    assert local.pick_engine("auto", gguf, "cpu") == "transformers"  # the fallback: converted once
    with pytest.raises(ProviderError, match=r"RILL_ENGINE=llamacpp needs pip install 'rill\[llamacpp\]'"):
        local.pick_engine("llamacpp", gguf, "cpu")


def test_a_missing_engine_is_named_as_the_extra_to_install(tmp_path, monkeypatch):
    """An installed wheel without its engines (pip install rill) says which extra runs the model."""
    monkeypatch.setattr(local, "installed", lambda module: False)
    assert local.pick_device("auto") == "cpu"  # no torch: no GPU to ask about
    with pytest.raises(ProviderError, match=r"a GGUF model needs pip install 'rill\[llamacpp\]'"):
        local.pick_engine("auto", tmp_path / "m.gguf", "auto")
    with pytest.raises(ProviderError, match=r"a transformers model needs pip install 'rill\[transformers\]'"):
        local.pick_engine("auto", tmp_path / "m", "auto")
