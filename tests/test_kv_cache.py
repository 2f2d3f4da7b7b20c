"""The local engines' KV cache, on the real model: a follow-up turn starts from the cached
conversation (both engines), a cancelled turn leaves none behind, llama.cpp's cache makes turns
wait, not fail, and holds running turns only."""
import threading
import time

import llama_cpp as C
import numpy as np
import pytest
import torch

from rill.config import Settings
from rill.providers.base import ChatMessage, Finish, GenerationOptions, Piece
from rill.providers.local import LocalProvider
from rill.providers.local.prefix_cache import common_prefix
from rill.providers.local.row import Row
from tests.test_batching import assert_greedy, collect, scheduling
from tests.test_batching import submit_messages as submit

pytestmark = pytest.mark.slow


def scheduler(engine: str = "llamacpp", **settings):
    # float32: RILL_DTYPE=auto would time both dtypes at every load (tested in test_batching)
    provider = LocalProvider(Settings.from_env(engine=engine, **{"dtype": "float32", **settings}))
    provider.load()
    assert provider.state == "ready", provider.error
    return scheduling(provider)


@pytest.fixture(scope="module", params=["llamacpp", "transformers"])
def local(request):
    with scheduler(request.param, context_tokens=8192) as provider:
        yield provider


def test_a_follow_up_turn_starts_from_the_cached_conversation(local):
    first_turn = [ChatMessage("user", "My name is Zorblat. Tell me about rivers.")]
    reply, finish = collect(submit(local, first_turn, max_tokens=60))
    assert finish.cached_tokens == 0 or finish.cached_tokens < finish.prompt_tokens
    follow_up = [*first_turn, ChatMessage("assistant", reply), ChatMessage("user", "What is my name?")]
    answer, again = collect(submit(local, follow_up, max_tokens=20))
    # Everything up to the end of the first reply came from the cache: only the new message was prefilled.
    assert again.cached_tokens >= finish.prompt_tokens + finish.completion_tokens - 2
    assert again.prompt_tokens - again.cached_tokens < 20
    assert "Zorbl" in answer  # the conversation reached the model (135M parameters spell it as they can)


def test_a_cancelled_turn_leaves_no_cache_behind(local):
    job = submit(local, [ChatMessage("user", "Count from one to a hundred.")], max_tokens=200)
    while not isinstance(job.channel.get(timeout=60), Piece):
        pass
    job.cancel.set()
    _, finish = collect(job)
    assert finish.reason == "cancelled"
    _, finish = collect(submit(local, [ChatMessage("user", "Count from one to a hundred.")], max_tokens=4))
    # The cancelled turn's cache was freed, not kept: at most a kept turn's system prompt is shared
    # (kept, the whole prompt but its last token would be).
    assert finish.cached_tokens < finish.prompt_tokens - 1


def test_turns_wait_for_room_in_a_small_cache_and_all_finish():
    prompts = ["Name three colors.", "List two fruits.", "Say hello in French."]
    with scheduler(context_tokens=1024, cache_tokens=1024) as small:
        jobs = [submit(small, [ChatMessage("user", p)], max_tokens=400, stop=("\n\n\n",)) for p in prompts]
        outcomes = [collect(j) for j in jobs]
    assert all(isinstance(f, Finish) and f.reason in ("stop", "length", "stop_sequence") for _, f in outcomes)
    assert all(text.strip() for text, _ in outcomes)


def test_llama_cpp_keeps_a_finished_conversation_out_of_its_kv_cache_and_brings_it_back():
    """Every token attends over the KV cache's whole used range, so a finished conversation left in
    it would slow every later step: it is copied out, and back in for its follow-up."""
    provider = LocalProvider(Settings.from_env(engine="llamacpp"))
    provider.load()
    batch = provider.model.new_batch(4)
    sequences = range(C.llama_n_seq_max(batch.ctx))
    kept = lambda: [C.llama_memory_seq_pos_max(batch.memory, seq) for seq in sequences]  # -1: empty

    def turn(messages: list[ChatMessage], max_tokens: int = 30) -> tuple[Row, str]:
        out = []
        options = GenerationOptions(temperature=0, max_tokens=max_tokens)
        row = Row(provider.model, provider.encode_prompt(messages, options)[0], options, threading.Event(), out.append)
        batch.add([row])
        while not row.done:
            batch.step()
            assert kept().count(-1) == len(sequences) - 1  # the running turn's sequence only
        batch.drop_done()
        return row, "".join(i.text for i in out if isinstance(i, Piece))

    story = " ".join(f"The river passed town number {i} on its way to the sea." for i in range(12))
    first_turn = [ChatMessage("user", f"{story} Tell me about rivers.")]
    first, reply = turn(first_turn)
    assert first.reason == "length" and kept() == [-1] * len(sequences)
    [first_copy] = batch.kept.kept
    follow_up, _ = turn([*first_turn, ChatMessage("assistant", reply), ChatMessage("user", "And lakes?")], 8)
    assert follow_up.cached_tokens >= len(first.prompt) + first.produced - 2
    assert kept() == [-1] * len(sequences)
    # The follow-up's copy replaced the first turn's, in its memory (a quarter more than it took).
    [copy] = batch.kept.kept
    assert copy.state.size > first_copy.state.size and np.shares_memory(copy.state, first_copy.state)
    batch.close()


def test_llama_cpp_turns_sharing_a_prompt_prefix_share_its_cells():
    """A newcomer takes the cells a running turn holds for the same tokens (the same system
    prompt; the same question from several users) instead of prefilling them again."""
    with scheduler() as provider:
        counting = submit(provider, [ChatMessage("user", "Count from one to a hundred.")], max_tokens=300)
        while not isinstance(counting.channel.get(timeout=60), Piece):  # it is decoding
            pass
        colors = [ChatMessage("user", "Name three colors.")]
        beside, finish = collect(submit(provider, colors, max_tokens=12))
        options = GenerationOptions(temperature=0)
        system_prompt = common_prefix(
            provider.encode_prompt([ChatMessage("user", "Count from one to a hundred.")], options)[0],
            provider.encode_prompt(colors, options)[0])
        assert system_prompt > 5 and finish.cached_tokens == system_prompt
        counting.cancel.set()
        collect(counting)

        fruits = [ChatMessage("user", "List two fruits.")]
        together = [collect(job) for job in [submit(provider, fruits, max_tokens=12) for _ in range(3)]]
        prompt_tokens = together[0][1].prompt_tokens
        # The first found the system prompt in a kept turn and prefilled the rest for all three; the
        # other two took all of it but the last token.
        assert [f.cached_tokens for _, f in together] == [system_prompt] + [prompt_tokens - 1] * 2
        assert len({text for text, _ in together}) == 1  # greedy: the same reply from shared cells
        assert collect(submit(provider, colors, max_tokens=12))[0] == beside


def test_llama_cpp_newcomers_with_one_prompt_all_decode_after_two_steps():
    """Of several newcomers with the same prompt, one prefills it and the others take its cells the
    step after, all at once, and decode their last prompt token there (a turn waited a step for
    each one before it: at c=8 the last of them started seven steps late)."""
    provider = LocalProvider(Settings.from_env(engine="llamacpp"))
    provider.load()
    batch = provider.model.new_batch(8)
    options = GenerationOptions(temperature=0, max_tokens=30)
    prompt = provider.encode_prompt([ChatMessage("user", "Name three colors.")], options)[0]
    rows = [Row(provider.model, prompt, options, threading.Event(), lambda item: None) for _ in range(6)]
    batch.add(rows)
    batch.step()
    assert [row.fed for row in rows] == [len(prompt)] + [0] * 5
    batch.step()
    assert all(row.produced == 1 for row in rows[1:]) and rows[0].produced == 2
    assert [row.cached_tokens for row in rows] == [0] + [len(prompt) - 1] * 5
    batch.close()


def test_a_tokens_logits_do_not_depend_on_what_its_step_holds():
    """llama.cpp with a BF16 cache (RILL_KV_CACHE=bf16): a token's logits are those of its own step,
    with guesses after it, other conversations' tokens beside it, or its prompt split where a cached
    prefix ends (the same cells in the same order: where other rows' cells shift them, the sums
    still round differently). With an F16 cache they differ by up to about 0.5."""
    from bench.logit_invariance import differences
    from rill.providers.local.llama_cpp import LlamaModel

    provider = LocalProvider(Settings.from_env(engine="llamacpp", kv_cache="bf16"))
    provider.load()
    assert provider.model.kv_cache == "bf16"
    assert isinstance(provider.model, LlamaModel)
    found = differences(provider.model, flash=True, kv=provider.model.kv_cache)
    # 0 on an AVX512 machine; the bound leaves room for the output layer's kernels, which on other
    # CPUs may differ between one row and several (F16's attention: 0.29-0.52).
    assert len(found) == 5 and all(difference < 0.01 for difference in found.values()), found


def test_the_kv_cache_setting_is_taken_at_load_and_an_unknown_one_fails_it():
    """RILL_KV_CACHE: F16 unless asked (the load describes it), BF16 on request; anything else fails
    the load, naming the choices."""
    provider = LocalProvider(Settings.from_env(engine="llamacpp"))
    provider.load()
    assert provider.model.describe()["kv_cache"] == "f16"
    bf16 = LocalProvider(Settings.from_env(engine="llamacpp", kv_cache="bf16"))
    bf16.load()
    assert bf16.model.describe()["kv_cache"] == "bf16"
    wrong = LocalProvider(Settings.from_env(engine="llamacpp", kv_cache="q4_0"))
    wrong.load()
    assert wrong.state == "error"
    assert "RILL_KV_CACHE='q4_0' is not one of f16, bf16, q8_0" in wrong.error


def test_a_follow_up_after_a_long_conversation_prefills_only_its_new_tokens_in_one_step():
    """llama.cpp with an F16 cache: a follow-up's new message after a long kept conversation goes in
    one step of its own (Rill's build takes flash attention's tiled path for it: patches/llama.cpp);
    the reply is the one without the cache, and the kept tokens count as cached."""
    provider = LocalProvider(Settings.from_env(engine="llamacpp"))
    provider.load()
    options = GenerationOptions(temperature=0, max_tokens=16)

    def reply(batch, messages: list[ChatMessage]) -> tuple[Row, str, list[int]]:
        """The turn's row, its text, and the tokens of each of its steps."""
        out, steps = [], []
        row = Row(provider.model, provider.encode_prompt(messages, options)[0], options, threading.Event(), out.append)
        batch.add([row])
        while not row.done:
            batch.step()
            steps.append(batch.batch.n_tokens)
        batch.drop_done()
        return row, "".join(i.text for i in out if isinstance(i, Piece)), steps

    story = " ".join(f"On day {i} the river carried a boat of {i * 3} apples to the mill." for i in range(1, 40))
    first_turn = [ChatMessage("user", f"{story}\nHow many days are there?")]
    batch = provider.model.new_batch(4)
    first, answer, _ = reply(batch, first_turn)
    follow_up = [*first_turn, ChatMessage("assistant", answer),
                 ChatMessage("user", "Now tell me which day carried the most apples, and why that matters to the mill.")]
    row, text, steps = reply(batch, follow_up)
    new = len(row.prompt) - (len(first.prompt) + first.produced)
    assert len(first.prompt) > 600 and 16 <= new < 64  # enough for a tile, after a long conversation
    assert new <= steps[0] <= new + 2  # from where the kept turn and the prompt part ways, in one step
    assert row.cached_tokens >= len(first.prompt) + first.produced - 2
    batch.close()
    alone = provider.model.new_batch(4)  # no kept conversation: the whole prompt prefilled
    whole, expected, _ = reply(alone, follow_up)
    alone.close()
    assert whole.cached_tokens == 0
    assert_greedy(provider, follow_up, text, expected)


def test_flash_attention_tiles_a_follow_ups_few_queries_as_it_tiles_many():
    """Rill's build of llama.cpp (patches/llama.cpp): with an F16 cache, a step over 512 cells or
    more whose queries look at the same cells takes the tiled path from 16 queries, not 64, and a
    tile computes each of its rows as it would in any other tile. So 19 new tokens after 681 give
    their last token the logits it gets with the 45 tokens before them in its step, 64 queries
    (tiled in any build): stock llama.cpp takes the 19 one query at a time, about 0.65 apart. One
    query at a time, the same token is close (F16 sums), with the same top token."""
    from bench.logit_invariance import prefilled
    from rill.providers.local.llama_cpp import LlamaModel, new_context

    provider = LocalProvider(Settings.from_env(engine="llamacpp"))
    provider.load()
    model = provider.model
    assert isinstance(model, LlamaModel) and model.kv_cache == "f16"
    ctx = new_context(model.handle, 2048, 1, 512, model.threads)
    batch = C.llama_batch_init(512, 0, 1)
    prompt = [100 + (i * 37) % 3000 for i in range(700)]

    try:
        nineteen = prefilled(ctx, batch, model.n_vocab, prompt, [512, 681, 700])
        sixty_four = prefilled(ctx, batch, model.n_vocab, prompt, [512, 636, 700])
        one_at_a_time = prefilled(ctx, batch, model.n_vocab, prompt, [512, 681, *range(682, 701)])
    finally:
        C.llama_batch_free(batch)
        C.llama_free(ctx)
    # 0 here; the bound leaves room for the output layer's kernels on other CPUs
    assert np.abs(nineteen - sixty_four).max() < 0.01
    assert np.abs(nineteen - one_at_a_time).max() < 1.5 and nineteen.argmax() == one_at_a_time.argmax()


def test_a_row_decoding_beside_others_gets_its_own_logits_as_their_cells_interleave():
    """Rows decoding together take one cell each a step, so a row's reply lies in one cell of every
    four here, and flash attention skips the other rows' cells for each query (Rill's build tests 16
    cells' mask values at a time: patches/llama.cpp). A row beside three others gets, after 24
    tokens, the logits it gets decoding alone, its reply's cells side by side."""
    from bench.logit_invariance import logits_of
    from rill.providers.local.llama_cpp import LlamaModel, new_context

    provider = LocalProvider(Settings.from_env(engine="llamacpp"))
    provider.load()
    model = provider.model
    assert isinstance(model, LlamaModel) and model.kv_cache == "f16"
    ctx = new_context(model.handle, 1024, 4, 512, model.threads)
    batch, memory = C.llama_batch_init(512, 0, 1), C.llama_get_memory(ctx)
    prompts = [[100 + (i * 37 + 11 * seq) % 3000 for i in range(20 + 5 * seq)] for seq in range(4)]
    replies = [[400 + (j * 53 + 7 * seq) % 3000 for j in range(24)] for seq in range(4)]

    def row_zero_after_its_reply(rows: list[int]) -> np.ndarray:
        C.llama_memory_seq_rm(memory, -1, -1, -1)
        for seq in rows:
            logits_of(ctx, batch, model.n_vocab, [(t, i, seq) for i, t in enumerate(prompts[seq])], 0)
        for j in range(24):
            logits = logits_of(ctx, batch, model.n_vocab,
                               [(replies[seq][j], len(prompts[seq]) + j, seq) for seq in rows], 0)
        return logits

    try:
        alone, beside_others = row_zero_after_its_reply([0]), row_zero_after_its_reply([0, 1, 2, 3])
    finally:
        C.llama_batch_free(batch)
        C.llama_free(ctx)
    # 0 here; the bound leaves room for the output layer's kernels on other CPUs
    assert np.abs(alone - beside_others).max() < 0.01


def test_follow_ups_arriving_together_are_prefilled_in_one_step(monkeypatch):
    """transformers: follow-ups that arrive together, each starting from its own kept conversation,
    take their slices in the same packed forward pass (they joined one a step before), and each
    reply is the one without the cache."""
    from rill.providers.local import transformers as hf_engine

    provider = LocalProvider(Settings.from_env(engine="transformers", dtype="float32"))
    provider.load()
    options = GenerationOptions(temperature=0, max_tokens=12)
    packed = []

    class Recorded(hf_engine.PackedStep):
        def __init__(self, main, rows, mask, slices):
            packed.append(len(slices))
            super().__init__(main, rows, mask, slices)

    monkeypatch.setattr(hf_engine, "PackedStep", Recorded)

    def replies(batch, conversations: list[list[ChatMessage]]) -> tuple[list[Row], list[str]]:
        outs = [[] for _ in conversations]
        rows = [Row(provider.model, provider.encode_prompt(messages, options)[0], options, threading.Event(), out.append)
                for messages, out in zip(conversations, outs)]
        batch.add(rows)
        while not all(row.done for row in rows):
            batch.step()
            batch.drop_done()
        return rows, ["".join(i.text for i in out if isinstance(i, Piece)) for out in outs]

    firsts = [[ChatMessage("user", question)] for question in
              ("Tell me about rivers.", "Name three colors.", "What is a haiku?")]
    batch = provider.model.new_batch(4)
    _, answers = replies(batch, firsts)
    follow_ups = [[*first, ChatMessage("assistant", answer), ChatMessage("user", "Say more.")]
                  for first, answer in zip(firsts, answers)]
    packed.clear()
    rows, texts = replies(batch, follow_ups)
    batch.close()
    assert all(row.cached_tokens > len(row.prompt) // 2 for row in rows)  # each from its kept conversation
    assert packed[0] == len(follow_ups)  # all three prompts' rests in the first step
    alone = provider.model.new_batch(4)
    for follow_up, text in zip(follow_ups, texts):
        (row,), (expected,) = replies(alone, [follow_up])
        assert row.cached_tokens == 0 or row.cached_tokens < len(row.prompt) // 2
        assert text == expected
    alone.close()


def test_a_follow_up_writes_into_its_kept_conversations_room_and_leaves_it_whole():
    """transformers: the follow-up that goes on from all of a kept conversation takes its room as
    its own cache (no copy before its first token); alone, the batch decodes its reply there. One
    that comes while a cache in use writes there, or that shares less (a reply regenerated),
    copies. None of them changes the kept conversation, one cancelled mid-reply leaves the room
    for the next, and every greedy reply is the one from an empty cache."""
    provider = LocalProvider(Settings.from_env(engine="transformers", dtype="float32"))
    provider.load()
    batch = provider.model.new_batch(4)

    def start(messages: list[ChatMessage], max_tokens: int = 12) -> tuple[Row, list]:
        out, options = [], GenerationOptions(temperature=0, max_tokens=max_tokens)
        row = Row(provider.model, provider.encode_prompt(messages, options)[0], options, threading.Event(), out.append)
        batch.add([row])
        return row, out

    def finish(rows: list[Row]) -> None:
        while not all(row.done for row in rows):
            batch.step()
            batch.drop_done()
        while batch.rows:  # (no closing: none of these chats went on before)
            batch.step()
            batch.drop_done()

    def text(out: list) -> str:
        return "".join(i.text for i in out if isinstance(i, Piece))

    chat = [ChatMessage("user", "Tell me about rivers.")]
    first, out = start(chat)
    finish([first])
    entry = batch.kept.kept[-1]
    kept, length = entry.state, len(entry.tokens)
    room = kept[0][0]
    assert length == len(first.kv) and room.shape[2] == length + batch.FOLLOW_UP_ROOM
    before = [states[:, :, :length].clone() for layer in kept for states in layer]
    whole = [*chat, ChatMessage("assistant", text(out)), ChatMessage("user", "Say more.")]
    alone, alone_out = start(whole, max_tokens=40)
    assert alone.cached_tokens == length and alone.own_cache.layers[0].key_room is room
    while len(alone_out) < 3:  # joined: the batch's cache is the room, its reply decoded into it
        batch.step()
    assert batch.cache.layers[0].key_room is room
    alone.finish("cancelled")  # as the scheduler does between steps
    batch.drop_done()
    assert batch.rows == [] and batch.kept.kept[-1] is entry
    again, again_out = start(chat)  # shares less than the kept conversation: a copy
    assert again.cached_tokens == len(again.prompt) - 1 and again.own_cache.layers[0].key_room is not room
    second, second_out = start(whole)  # the room is free again
    assert second.cached_tokens == length and second.own_cache.layers[0].key_room is room
    third, third_out = start(whole)  # second's cache writes into it: a copy
    assert third.cached_tokens == length and third.own_cache.layers[0].key_room is not room
    finish([again, second, third])
    batch.close()
    after = [states[:, :, :length] for layer in kept for states in layer]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    batch = empty = provider.model.new_batch(4)
    for messages, got in ((whole, text(second_out)), (whole, text(third_out)), (chat, text(again_out))):
        row, out = start(messages)
        assert row.cached_tokens == 0
        finish([row])
        assert got == text(out)
        empty.kept.clear()
    empty.close()


@pytest.mark.parametrize("engine", ["llamacpp", "transformers"])
def test_a_chats_closing_is_decoded_when_its_reply_ends(engine):
    """In a chat that has gone on before, a finished reply stays one more step, in which the end of
    the reply not in the cache yet (cut at max_tokens: its last token) and the template's closing
    after it are decoded (the next prompt holds them next); then it is kept. The next turn
    prefills only its own message and gets the reply it gets from an empty cache. A first turn
    keeps no closing: a one-off request's would be decoded for nothing."""
    provider = LocalProvider(Settings.from_env(engine=engine, dtype="float32"))
    provider.load()
    closing = provider.model.closing()
    assert provider.model.tokenizer.decode(closing, skip_special_tokens=False) == "<|im_end|>\n<|im_start|>user\n"

    def turn(batch, messages: list[ChatMessage], max_tokens: int, idle: bool = True) -> tuple[Row, str, bool]:
        """The turn's row, its text, and whether it stayed for a step after its reply ended; `idle`:
        then steps as the scheduler does with nothing else to do."""
        out, options = [], GenerationOptions(temperature=0, max_tokens=max_tokens)
        row = Row(provider.model, provider.encode_prompt(messages, options)[0], options, threading.Event(), out.append,
                  goes_on=len(messages) > 1)
        batch.add([row])
        while not row.done:
            batch.step()
        batch.drop_done()
        stayed = row in batch.rows
        while idle and batch.rows:
            batch.step()
            batch.drop_done()
        return row, "".join(i.text for i in out if isinstance(i, Piece)), stayed

    batch = provider.model.new_batch(4)
    chat = [ChatMessage("user", "Hi!")]
    first, reply, stayed = turn(batch, chat, 60)
    assert not stayed and batch.kept.kept[-1].tokens == first.kv
    for ask, max_tokens in (("What is 2+2?", 60), ("Tell me about rivers.", 8)):  # (this model: a stop, then cut)
        chat += [ChatMessage("assistant", reply), ChatMessage("user", ask)]
        row, reply, stayed = turn(batch, chat, max_tokens)
        assert stayed and batch.kept.kept[-1].tokens == row.prompt + row.decoder.ids + closing, row.reason
    assert row.reason == "length"
    chat += [ChatMessage("assistant", reply), ChatMessage("user", "Say thank you.")]
    last, text, stayed = turn(batch, chat, 30, idle=False)
    ask = provider.model.tokenizer.encode("Say thank you.")
    assert last.cached_tokens == len(row.kv) and last.prompt[last.cached_tokens:][: len(ask)] == ask
    # The next turn comes before the closing is decoded: it takes the finished turn, kept whole, and
    # prefills the closing itself, once.
    assert stayed
    options = GenerationOptions(temperature=0, max_tokens=4)
    following = [*chat, ChatMessage("assistant", text), ChatMessage("user", "Thanks.")]
    after = Row(provider.model, provider.encode_prompt(following, options)[0], options, threading.Event(),
                lambda item: None, goes_on=True)
    batch.add([after])
    assert batch.rows == [after] and batch.kept.kept[-1].tokens == last.kv and after.cached_tokens == len(last.kv)
    batch.step()
    if engine == "llamacpp":
        assert batch.batch.n_tokens == len(after.prompt) - len(last.kv), batch.batch.n_tokens
    batch.close()
    empty = provider.model.new_batch(4)
    whole, expected, _ = turn(empty, chat, 30)
    empty.close()
    assert whole.cached_tokens == 0
    assert_greedy(provider, chat, text, expected)


@pytest.mark.parametrize("engine", ["llamacpp", "transformers"])
def test_a_chats_next_turn_finds_its_closing_decoded_after_a_pause_and_prefills_it_itself_at_once(engine):
    """Through the scheduler: with nothing else to do, the engine waits CLOSING_GRACE for new work
    before it decodes a finished chat's closing. A next turn sent at once (as a script sends it)
    prefills the closing itself, from the finished turn kept whole; one sent after a pause (as a
    person types) finds it decoded and prefills only its own message. The first turn here brings a
    chat the engine has not seen and ends on its first token (on transformers: as it joins the
    batch, before any step); it waits too."""
    from rill.providers.local.scheduler import CLOSING_GRACE

    with scheduler(engine, context_tokens=4096) as provider:
        closing = provider.model.closing()
        chat = [ChatMessage("user", "Hi!"), ChatMessage("assistant", "Hello! How can I help you today?")]
        before, found = 0, []  # the last turn's prompt and reply; what each next turn found cached
        for ask, pause, tokens in (("What is 2+2?", 0, 1), ("Tell me about rivers.", 0, 12),
                                   ("Say thank you.", 0, 12), ("Bye.", 4, 12)):
            time.sleep(pause * CLOSING_GRACE)
            chat.append(ChatMessage("user", ask))
            reply, finish = collect(submit(provider, chat, max_tokens=tokens))
            found.append(finish.cached_tokens - before)
            before = finish.prompt_tokens + finish.completion_tokens
            chat.append(ChatMessage("assistant", reply))
    # At once: the last turn's reply all cached (but its last token, where it was cut), not the
    # closing. After a pause: the closing as well.
    assert found[0] == 0 and found[1] in (-1, 0) and found[2] in (-1, 0) and found[3] == len(closing), found


@pytest.mark.parametrize("engine", ["llamacpp", "transformers"])
def test_a_turn_waiting_for_room_takes_a_finished_chats_place_before_its_closing(engine):
    """Finished chats waiting to close take no place in the batch: with room for two turns, two
    chats that end in the same step leave the turn waiting behind them to go in at once, and are
    kept without their closing. (A batch of one keeps no conversation on llama.cpp.)"""
    with scheduler(engine, max_batch=2, speculate=False) as provider:  # (guesses: the two would end apart)
        collect(submit(provider, [ChatMessage("user", "Count to 5.")], max_tokens=2))  # the system prompt, kept
        # (nothing shared past it: on llama.cpp the second would wait for the first's prefill, a step later)
        chats = [[ChatMessage("user", opening), ChatMessage("assistant", "Hello! How can I help you today?"),
                  ChatMessage("user", f"Tell me a long story about {topic}.")]
                 for opening, topic in (("Hi! I am Ana.", "rivers"), ("Good morning, Bo here.", "mountains"))]
        jobs = [submit(provider, chat, max_tokens=6) for chat in chats]
        waiting = submit(provider, [ChatMessage("user", "Count to 3.")], max_tokens=6)
        (reply, finish), _ = [collect(job) for job in jobs]
        collect(waiting)
        chat = [*chats[0], ChatMessage("assistant", reply), ChatMessage("user", "Thanks.")]
        _, again = collect(submit(provider, chat, max_tokens=4))
    assert finish.reason == "length" and finish.completion_tokens == 6
    assert again.cached_tokens - (finish.prompt_tokens + finish.completion_tokens) in (-1, 0)


@pytest.mark.parametrize("engine", ["llamacpp", "transformers"])
def test_a_finished_chats_closing_is_no_turn_the_model_is_idle_and_unloads(engine):
    """While a finished chat's closing waits (CLOSING_GRACE), the engine counts as idle, and an
    unload (RILL_MAX_LOADED_MODELS) goes ahead without decoding it."""
    with scheduler(engine) as provider:
        chat = [ChatMessage("user", "Hi!")]
        reply, _ = collect(submit(provider, chat, max_tokens=12))
        chat += [ChatMessage("assistant", reply), ChatMessage("user", "What is 2+2?")]
        collect(submit(provider, chat, max_tokens=12))
        deadline = time.monotonic() + 10
        while not provider.idle() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert provider.unload()
        while provider.state != "unloaded" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert provider.state == "unloaded"


def test_a_closing_never_shares_a_step_with_a_turn():
    """A closing is decoded only in a step of its own: beside another turn's tokens it would change
    how that turn's sums round (the same question, asked twice, would get two replies). A newcomer,
    any, takes the place of pending closings: they are kept as they are, and the step holds only
    its own tokens; a chat that finishes while another turn runs keeps no closing."""
    provider = LocalProvider(Settings.from_env(engine="llamacpp"))
    provider.load()
    batch = provider.model.new_batch(3)
    options = GenerationOptions(temperature=0, max_tokens=4)
    chat = [ChatMessage("user", "Hi!"), ChatMessage("assistant", "Hello!"), ChatMessage("user", "Tell me about rivers.")]
    prompt = provider.encode_prompt(chat, options)[0]
    finished = Row(provider.model, prompt, options, threading.Event(), lambda item: None, goes_on=True)
    batch.add([finished])
    while not finished.done:
        batch.step()
    batch.drop_done()
    assert finished.closing and batch.rows == [finished]  # nothing else runs: it waits to close
    story = " ".join(f"On day {i} the river carried a boat of {i * 3} apples to the mill." for i in range(1, 60))
    long_options = GenerationOptions(temperature=0, max_tokens=40)
    long = Row(provider.model, provider.encode_prompt([ChatMessage("user", story)], long_options)[0], long_options,
               threading.Event(), lambda item: None)
    batch.add([long])
    assert batch.rows == [long] and batch.kept.kept[-1].tokens == finished.kv
    batch.step()
    assert batch.batch.n_tokens == batch.PREFILL_ALONE and long.fed - long.cached_tokens == batch.PREFILL_ALONE
    beside = Row(provider.model, prompt, GenerationOptions(temperature=0, max_tokens=2), threading.Event(),
                 lambda item: None, goes_on=True)
    batch.add([beside])
    while not beside.done:
        batch.step()
    batch.drop_done()
    assert not long.done and beside not in batch.rows and batch.kept.kept[-1].tokens == beside.kv  # no closing
    batch.close()
