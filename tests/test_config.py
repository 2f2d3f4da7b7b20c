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


def test_prompt_slices_fit_the_stall_bound_from_measured_step_costs():
    from backend.providers.local import PrefillPacer

    pacer = PrefillPacer(most=128)
    assert pacer.budget() == 8  # small until measured
    pacer.record(0.020, 0)  # a plain decode step: 20 ms

    def step(fixed: float, per_token: float) -> None:
        size = pacer.budget()
        pacer.record(0.020 + fixed + per_token * size, size)

    for _ in range(60):  # llama.cpp on a CPU: 4 ms a prompt token, so about 5 fit in 2x a step
        step(0.0, 0.004)
    assert 3 <= pacer.budget() <= 6
    for _ in range(60):  # transformers: a second forward pass costs 10 ms, then 0.1 ms a token
        step(0.010, 0.0001)
    assert 70 <= pacer.budget() <= 110
    for _ in range(60):  # a second pass costing more than the bound: a quarter of its worth in tokens
        step(0.030, 0.0005)
    assert 12 <= pacer.budget() <= 18
    for _ in range(60):  # a GPU: prompt tokens nearly free, capped by the setting
        step(0.0, 0.000001)
    assert pacer.budget() == 128
