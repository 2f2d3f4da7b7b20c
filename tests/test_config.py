"""Fast tier: settings from RILL_* variables."""
import pytest

from backend.config import Settings, comma_list


@pytest.mark.parametrize("raw,value", [("false", False), ("0", False), ("off", False), ("True", True), ("1", True)])
def test_booleans_read_as_people_write_them(raw, value, monkeypatch):
    assert Settings.from_env({"RILL_MODEL": "m"}).model == "m"
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class WithFlag(Settings):
        flag: bool = not value

    assert WithFlag.from_env({"RILL_FLAG": raw}).flag is value


def test_a_bad_value_names_the_variable():
    with pytest.raises(SystemExit, match="RILL_PORT='http'"):
        Settings.from_env({"RILL_PORT": "http"})
    with pytest.raises(SystemExit, match="RILL_HTTP_IDLE_SECONDS"):
        Settings.from_env({"RILL_HTTP_IDLE_SECONDS": "soon"})


def test_comma_lists_drop_spaces_and_blanks():
    assert comma_list(" alice, bob ,,") == ["alice", "bob"]
    assert comma_list("") == []


def test_the_engine_is_llama_cpp_for_gguf_files_on_a_cpu_and_transformers_for_the_rest(tmp_path, monkeypatch):
    from backend.providers import local
    from backend.providers.base import ProviderError

    gguf, directory = tmp_path / "m.gguf", tmp_path / "m"
    monkeypatch.setattr(local, "llama_cpp_installed", lambda: True)
    assert local.pick_engine("auto", gguf, "auto") == "llamacpp"
    assert local.pick_engine("auto", gguf, "cuda") == "transformers"
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


def test_prompt_slices_keep_a_mixed_step_within_the_stall_bound():
    from backend.providers.local import PrefillPacer

    pacer = PrefillPacer(most=128)
    assert pacer.budget() == 8  # small until both costs are measured
    pacer.record(0.020, 0)  # a plain decode step: 20 ms
    pacer.record(0.060, 10)  # ten prompt tokens added 40 ms: 4 ms each
    assert pacer.budget() == int((PrefillPacer.STALL - 1) * 0.020 / 0.004)
    for _ in range(50):  # a GPU-like machine: prompt tokens nearly free, capped by the setting
        pacer.record(0.020, 0)
        pacer.record(0.0201, 100)
    assert pacer.budget() == 128
