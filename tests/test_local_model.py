"""The local provider on the real model, in-process, on each engine: decoding, sampling, window,
cancellation, hidden states."""
import threading

import pytest

from rill.config import Settings
from rill.providers.base import ChatMessage, Finish, GenerationOptions, Prompt
from rill.providers.local.decoding import IncrementalDecoder
from rill.providers.local import LocalProvider

pytestmark = pytest.mark.slow


ENGINES = ["llamacpp", "transformers"]


def load(engine: str, **settings) -> LocalProvider:
    # float32: RILL_DTYPE=auto would time both dtypes at every load (tested in test_batching)
    provider = LocalProvider(Settings.from_env(engine=engine, **{"dtype": "float32", **settings}))
    provider.load()
    assert provider.state == "ready", provider.error
    assert provider.models()[0]["engine"] == {"llamacpp": "llama.cpp"}.get(engine, engine)
    return provider


@pytest.fixture(scope="module", params=ENGINES)
def local(request):
    return load(request.param, context_tokens=512)


def encode(local, text):
    tokenizer = local.model.tokenizer
    return tokenizer.encode(text) if local.model.engine == "llama.cpp" else tokenizer.encode(text, add_special_tokens=False)


def run(provider, messages, cancel=None, **options):
    items = list(provider.stream("m", messages, GenerationOptions(**options), cancel or threading.Event()))
    assert isinstance(items[0], Prompt) and isinstance(items[-1], Finish)
    assert items[0].tokens == items[-1].prompt_tokens
    return "".join(items[1:-1]), items[-1]


USER = [ChatMessage("user", "Name three colors.")]


def test_incremental_decoder_matches_full_decode_with_multibyte_text(local):
    text = "Rivers 🌊 flow — naïve café, 漢字 and emoji 👩‍👩‍👧 end."
    ids = encode(local, text)
    decoder = IncrementalDecoder(local.model.tokenizer)
    pieces = [decoder.push(i) for i in ids]
    assert "".join(pieces) == local.model.tokenizer.decode(ids) == text
    assert all("\ufffd" not in p for p in pieces)
    assert sum(1 for p in pieces if p) > 10  # pieces, not one lump


def test_greedy_is_deterministic_and_honours_max_tokens(local):
    first, finish = run(local, USER, temperature=0, max_tokens=12)
    second, _ = run(local, USER, temperature=0, max_tokens=12)
    assert first == second and first.strip()
    assert finish.completion_tokens <= 12
    assert finish.reason in ("stop", "length")
    if finish.reason == "length":
        assert finish.completion_tokens == 12


def test_tiny_top_p_is_greedy_and_seeds_repeat(local):
    greedy, _ = run(local, USER, temperature=0, max_tokens=10)
    nucleus, _ = run(local, USER, temperature=1.0, top_p=1e-6, max_tokens=10, seed=1)
    assert nucleus == greedy
    a, _ = run(local, USER, temperature=1.5, max_tokens=16, seed=42)
    b, _ = run(local, USER, temperature=1.5, max_tokens=16, seed=42)
    assert a == b


def test_history_reaches_the_model(local):
    convo = [ChatMessage("user", "My name is Zorblat."), ChatMessage("assistant", "Nice to meet you, Zorblat!"),
             ChatMessage("user", "Repeat my name.")]
    prompt = local.model.tokenizer.decode(local.encode_prompt(convo, GenerationOptions(max_tokens=16))[0])
    assert "Zorblat" in prompt and prompt.index("My name") < prompt.index("Repeat my name")


def test_context_window_drops_oldest_turns_and_keeps_system(local):
    filler = "word " * 60
    convo = [ChatMessage("system", "SYSTEM-RULE")]
    for i in range(12):
        convo += [ChatMessage("user", f"Q{i} {filler}"), ChatMessage("assistant", f"A{i} {filler}")]
    convo.append(ChatMessage("user", "LAST-QUESTION"))
    ids = local.encode_prompt(convo, GenerationOptions(max_tokens=64))[0]
    prompt = local.model.tokenizer.decode(ids)
    assert len(ids) <= 512 - 64
    assert "SYSTEM-RULE" in prompt and "LAST-QUESTION" in prompt
    assert "Q0 " not in prompt and "Q11 " in prompt


def test_prompt_too_long_for_the_window_is_a_clear_error(local):
    from rill.providers.base import ProviderError

    with pytest.raises(ProviderError, match="context") as err:
        local.encode_prompt([ChatMessage("user", "word " * 2000)], GenerationOptions(max_tokens=64))
    assert err.value.type == "context_length_exceeded" and err.value.request_fault  # a 400 (errors.py)


def test_cancel_stops_within_one_decode_step(local):
    cancel = threading.Event()
    stream = local.stream("m", [ChatMessage("user", "Write a long story about a river.")],
                          GenerationOptions(max_tokens=200, temperature=0), cancel)
    pieces = []
    for item in stream:
        if isinstance(item, Prompt):
            continue
        if isinstance(item, str):
            pieces.append(item)
            if len(pieces) == 5:
                cancel.set()
        else:
            finish = item
    assert finish.reason == "cancelled"
    assert len(pieces) == 5
    assert finish.completion_tokens <= 6  # the token decoded after the last piece at most


def test_hidden_state_is_the_final_layer_output_behind_the_last_token(local):
    text, finish = run(local, USER, temperature=0, max_tokens=6, hidden_states=True)
    hidden = finish.hidden_states
    assert hidden.layer == 30 and hidden.dimension == len(hidden.values) == 576  # SmolLM2-135M
    assert int(output_logits(local, hidden.values).argmax()) == hidden.token_id  # greedy: what picked it
    ids = encode(local, text)
    decode = local.model.tokenizer.decode
    assert ids[-1] == hidden.token_id or decode(ids).endswith(decode([hidden.token_id]))


def output_logits(local, values):
    """The model's output layer applied to a hidden state, outside the engine that produced it."""
    import torch

    if local.model.engine == "transformers":
        model = local.model.model
        return model.lm_head(torch.tensor(values, dtype=model.dtype))
    import gguf

    tensors = {t.name: t for t in gguf.GGUFReader(local.model.file).tensors}
    weights = tensors.get("output.weight") or tensors["token_embd.weight"]  # tied embeddings
    matrix = torch.from_numpy(gguf.dequantize(weights.data, weights.tensor_type))
    return matrix @ torch.tensor(values)


def test_no_hidden_state_unless_asked(local):
    _, finish = run(local, USER, temperature=0, max_tokens=3)
    assert finish.hidden_states is None


def test_stop_sequence_cuts_the_reply(local):
    full, _ = run(local, USER, temperature=0, max_tokens=24)
    cut_at = full.index(" ", 3)
    stop = full[cut_at:cut_at + 3]
    text, finish = run(local, USER, temperature=0, max_tokens=24, stop=(stop,))
    assert finish.reason == "stop_sequence" and text == full[:full.index(stop)]


def test_a_vanishing_temperature_is_greedy_not_a_crash(local):
    greedy, _ = run(local, USER, temperature=0, max_tokens=6)
    tiny, _ = run(local, USER, temperature=2.2250738585e-313, max_tokens=6)  # found by the fuzzer
    assert tiny == greedy
    nucleus, _ = run(local, USER, temperature=1.0, top_p=2.2250738585e-313, max_tokens=6)  # this one too
    assert nucleus == greedy


def test_a_loaded_llama_cpp_model_cuts_chats_after_its_end_of_turn_token(local):
    if local.model.engine != "llama.cpp":
        pytest.skip("the transformers engine's tokenizer is Hugging Face's")
    model = local.model
    assert model.tokenizer.cuts == {model.turn_end(): "<|im_end|>"}  # found while loading, not in a turn
    chat = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye."}]
    assert model.chat_tokens(chat) == model.tokenizer.encode(model._render(chat, None))
