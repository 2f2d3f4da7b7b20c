"""Continuous batching on the real model, in-process, on each engine: batched turns equal the same
turns alone."""
import contextlib
import threading
import time

import pytest

from rill.config import Settings
from rill.providers.base import ChatMessage, Failure, Finish, GenerationOptions, Job, Piece, Prompt, ProviderError
from rill.providers.local import LocalProvider
from rill.providers.local import transformers as hf_engine
from rill.providers.local.row import Row

pytestmark = pytest.mark.slow

PROMPTS = ["Name three colors.", "Write a haiku about rivers.", "What is 2 + 2?", "Describe a cat in one sentence.",
           "List two fruits.", "Say hello in French."]


@pytest.fixture(scope="module", params=["llamacpp", "transformers"])
def local(request):
    # float32 for the transformers engine: bfloat16 rounds batched rows differently from a row alone.
    provider = LocalProvider(Settings.from_env(engine=request.param, context_tokens=1024, dtype="float32"))
    provider.load()
    assert provider.state == "ready", provider.error
    return provider


@contextlib.contextmanager
def scheduling(provider: LocalProvider):
    """The provider's own scheduler in a thread of its own, fed as the provider directory feeds it; closed
    and joined after (a scheduler thread still inside torch when the interpreter exits aborts it)."""
    thread = threading.Thread(target=provider.run, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        provider.close("the test is over")
        thread.join(timeout=60)
        assert not thread.is_alive(), "close() did not end the scheduler"


@pytest.fixture(scope="module")
def jobs(local):
    with scheduling(local):
        yield local


def alone(local, text, **options):
    items = list(local.stream("m", [ChatMessage("user", text)], GenerationOptions(**options), threading.Event()))
    return "".join(i for i in items if isinstance(i, str)), items[-1]


def submit(jobs, local, text, **options):
    job = Job(local, "m", [ChatMessage("user", text)], GenerationOptions(**options))
    jobs.submit(job)
    return job


def collect(job, timeout=120):
    """The text and the last item: a Finish, or the ProviderError of a Failure."""
    pieces, deadline = [], time.monotonic() + timeout
    while True:
        match job.channel.get(timeout=max(0.1, deadline - time.monotonic())):
            case Piece(text):
                pieces.append(text)
            case Finish() as finish:
                return "".join(pieces), finish
            case Failure(error):
                return "".join(pieces), error


class Forced(Row):
    """A row fed the given reply instead of its own picks; notes how far below the top logit each
    token of that reply was (0 where it is what greedy decoding would have picked)."""

    def __init__(self, model, prompt, reply):
        super().__init__(model, prompt, GenerationOptions(temperature=0, max_tokens=len(reply) + 1),
                         threading.Event(), lambda item: None)
        self.reply = list(reply)
        self.deficits: list[float] = []

    def accept(self, logits, hidden):
        token = self.reply.pop(0)
        self.deficits.append(float(logits.max() - logits[token]))
        self.last_token = token
        if not self.reply:
            self.finish("length")


def assert_greedy(local, prompt: str | list[ChatMessage], got: str, alone: str) -> None:
    """The transformers engine decodes batched rows exactly as alone: the texts are equal. On llama.cpp
    a row's sums run over its cache cells in their order in the cache, which other rows' cells shift
    (and with an F16 cache its CPU flash attention also rounds with the step's shape), so near ties
    can go the other way. There, each token of the batched reply must be greedy up to that rounding:
    fed back to the model alone, within 1.0 of the top logit. A row that read another row's cache,
    or the wrong positions, would write tokens far below it."""
    if local.model.engine == "transformers" or got == alone:
        assert got == alone
        return
    messages = [ChatMessage("user", prompt)] if isinstance(prompt, str) else prompt
    row = Forced(local.model, local.encode_prompt(messages, GenerationOptions(max_tokens=64))[0],
                 local.model.tokenizer.encode(got))
    batch = local.model.new_batch(1)
    batch.add([row])
    while not row.done:
        batch.step()
    batch.close()
    assert max(row.deficits) < 1.0, (got, alone, row.deficits)


def test_greedy_batched_equals_alone(local, jobs):
    expected = [alone(local, p, temperature=0, max_tokens=24)[0] for p in PROMPTS]
    submitted = [submit(jobs, local, p, temperature=0, max_tokens=24) for p in PROMPTS]
    for prompt, job, text in zip(PROMPTS, submitted, expected):
        assert_greedy(local, prompt, collect(job)[0], text)


def test_rows_of_very_different_lengths_answer_as_alone(local, jobs, monkeypatch):
    """On transformers every row here attends over its own columns only (a run of its own: no cost
    to a run), not over the long row's padding: the replies are still those of each turn alone."""
    monkeypatch.setattr(hf_engine, "RUN_COST", 0)
    long_text = " ".join(f"Item {i} is a {PROMPTS[i % 6].lower()}" for i in range(20)) + " Which item is last?"
    prompts = [PROMPTS[0], long_text, PROMPTS[2]]
    expected = [alone(local, p, temperature=0, max_tokens=20)[0] for p in prompts]
    grouped, row_runs = [], hf_engine.row_runs

    def recorded(mask):
        grouped.append(row_runs(mask))
        return grouped[-1]

    monkeypatch.setattr(hf_engine, "row_runs", recorded)
    submitted = [submit(jobs, local, p, temperature=0, max_tokens=20) for p in prompts]
    for prompt, job, text in zip(prompts, submitted, expected):
        assert_greedy(local, prompt, collect(job)[0], text)
    if local.model.engine == "transformers":
        assert max(len(runs) for runs in grouped) > 1, grouped


def test_a_turn_joins_a_running_batch_and_changes_nothing(local, jobs):
    long_alone, _ = alone(local, PROMPTS[1], temperature=0, max_tokens=80)
    short_alone, _ = alone(local, PROMPTS[0], temperature=0, max_tokens=16)
    first = submit(jobs, local, PROMPTS[1], temperature=0, max_tokens=80)
    seen = []
    while len(seen) < 10:  # the first turn is well under way
        item = first.channel.get(timeout=60)
        if isinstance(item, Piece):
            seen.append(item.text)
    second = submit(jobs, local, PROMPTS[0], temperature=0, max_tokens=16)
    short, finish = collect(second)
    rest, _ = collect(first)
    assert finish.reason in ("stop", "length")
    assert_greedy(local, PROMPTS[0], short, short_alone)
    assert_greedy(local, PROMPTS[1], "".join(seen) + rest, long_alone)


def test_per_turn_sampling_options_hold_in_a_batch(local, jobs):
    seeded_alone, _ = alone(local, PROMPTS[3], temperature=1.2, top_p=0.9, max_tokens=20, seed=7)
    greedy_alone, _ = alone(local, PROMPTS[3], temperature=0, max_tokens=20)
    seeded = submit(jobs, local, PROMPTS[3], temperature=1.2, top_p=0.9, max_tokens=20, seed=7)
    greedy = submit(jobs, local, PROMPTS[3], temperature=0, max_tokens=20)
    short = submit(jobs, local, PROMPTS[3], temperature=0, max_tokens=3)
    stopped = submit(jobs, local, PROMPTS[3], temperature=0, max_tokens=20, stop=("cat",))
    seeded_text = collect(seeded)[0]
    if local.model.engine == "transformers":  # llama.cpp's logits shift with the batch (see above)
        assert seeded_text == seeded_alone
    greedy_text = collect(greedy)[0]
    assert_greedy(local, PROMPTS[3], greedy_text, greedy_alone)
    text, finish = collect(short)
    assert finish.reason == "length" and finish.completion_tokens == 3
    text, finish = collect(stopped)
    assert "cat" in greedy_text  # "Describe a cat": it comes up
    assert finish.reason == "stop_sequence" and "cat" not in text
    # Cut right before the stop string: on llama.cpp a reply of its own beside the greedy one (near
    # ties), so checked token by token as greedy.
    assert_greedy(local, PROMPTS[3], text + "cat", greedy_text[:greedy_text.index("cat") + 3])


def test_cancel_touches_only_its_own_turn_within_a_step(local, jobs):
    expected = [alone(local, p, temperature=0, max_tokens=40)[0] for p in PROMPTS[:3]]
    a, b, c = (submit(jobs, local, p, temperature=0, max_tokens=40) for p in PROMPTS[:3])
    pieces = []
    while len(pieces) < 3:
        item = b.channel.get(timeout=60)
        if isinstance(item, Piece):
            pieces.append(item.text)
    b.cancel.set()
    _, finish = collect(b)
    assert finish.reason == "cancelled" and finish.completion_tokens <= 6
    assert_greedy(local, PROMPTS[0], collect(a)[0], expected[0])
    assert_greedy(local, PROMPTS[2], collect(c)[0], expected[2])


def test_a_failing_turn_does_not_take_the_batch_down(local, jobs):
    expected, _ = alone(local, PROMPTS[4], temperature=0, max_tokens=20)
    good = submit(jobs, local, PROMPTS[4], temperature=0, max_tokens=20)
    too_long = submit(jobs, local, "word " * 3000, temperature=0, max_tokens=20)
    bad_sampler = submit(jobs, local, PROMPTS[4], temperature=float("nan"), max_tokens=20)  # NaN probabilities
    error = too_long.channel.get(timeout=60)
    while isinstance(error, Prompt):
        error = too_long.channel.get(timeout=60)
    assert isinstance(error, Failure) and error.error.type == "context_length_exceeded"
    assert_greedy(local, PROMPTS[4], collect(good)[0], expected)
    _, outcome = collect(bad_sampler)
    assert isinstance(outcome, ProviderError) and outcome.type == "model_error", outcome
    assert_greedy(local, PROMPTS[4], collect(submit(jobs, local, PROMPTS[4], temperature=0, max_tokens=20))[0],
                  expected)


def test_a_conversation_the_template_rejects_fails_alone(local, jobs, monkeypatch):
    expected, _ = alone(local, PROMPTS[5], temperature=0, max_tokens=12)
    real = local.model.chat_tokens

    def picky(chat, tools=None):  # like a template that raises on roles it does not take
        if chat[-1]["content"] == "reject me":
            raise RuntimeError("Conversation roles must alternate")
        return real(chat, tools)

    monkeypatch.setattr(local.model, "chat_tokens", picky)
    rejected = submit(jobs, local, "reject me", temperature=0, max_tokens=12)
    _, outcome = collect(rejected)
    assert isinstance(outcome, ProviderError) and "alternate" in outcome.message
    assert outcome.type == "invalid_request_error"  # the request's fault: a 400 (errors.py)
    assert_greedy(local, PROMPTS[5], collect(submit(jobs, local, PROMPTS[5], temperature=0, max_tokens=12))[0],
                  expected)


def test_two_weight_copies_take_turns_by_batch_size():
    """dtype "auto" times both dtypes at load; where each wins at some batch size, both copies stay
    and the batch's cache follows the copy in use as rows join and leave."""
    import copy

    import torch

    provider = LocalProvider(Settings.from_env(engine="transformers", context_tokens=1024, max_batch=4))
    provider.load()
    model = provider.model
    assert set(model.dtype_for) == {1, 2, 4} and set(model.copies) == set(model.dtype_for.values())
    # Whatever this machine's timing picked, make both serve: bfloat16 alone, float32 from two rows.
    model.copies = {torch.bfloat16: copy.deepcopy(model.model).to(torch.bfloat16),
                    torch.float32: copy.deepcopy(model.model).to(torch.float32)}
    model.dtype_for = {1: torch.bfloat16, 2: torch.float32}
    assert model.model_for(1).dtype == torch.bfloat16 and model.model_for(3).dtype == torch.float32
    assert provider.models()[0]["dtype"] == "bfloat16+float32"
    with scheduling(provider):
        first = submit(provider, provider, PROMPTS[1], temperature=0, max_tokens=40)
        while not isinstance(first.channel.get(timeout=60), Piece):
            pass  # running alone, in bfloat16
        others = [submit(provider, provider, p, temperature=0, max_tokens=8) for p in PROMPTS[2:4]]
        outcomes = [collect(job) for job in (*others, first)]  # joined (float32), left (bfloat16 again)
    assert all(isinstance(finish, Finish) and text.strip() for text, finish in outcomes), outcomes


def submit_messages(provider, messages, **options) -> Job:
    job = Job(provider, "m", messages, GenerationOptions(**{"temperature": 0, **options}))
    provider.submit(job)
    return job


def timeline(job) -> list:
    """(arrival time, item) for each of the job's items, gathered on a thread; complete once it ends."""
    class Items(list):
        thread: threading.Thread

    items = Items()

    def gather():
        while not items or not isinstance(items[-1][1], (Finish, Failure)):
            item = job.channel.get(timeout=300)
            items.append((time.monotonic(), item))

    thread = threading.Thread(target=gather)
    thread.start()
    items.thread = thread
    return items


@pytest.fixture(scope="module", params=["llamacpp", "transformers"])
def long_context(request):
    provider = LocalProvider(Settings.from_env(engine=request.param, context_tokens=8192, dtype="float32"))
    provider.load()
    assert provider.state == "ready", provider.error
    with scheduling(provider):
        yield provider


def test_a_long_prompt_is_prefilled_in_chunks_while_other_turns_stream(long_context):
    running = submit_messages(long_context, [ChatMessage("user", "Write a long story about a river.")], max_tokens=400)
    while not isinstance(running.channel.get(timeout=60), Piece):
        pass
    running_items = timeline(running)
    long_text = " ".join(f"line {i}: the river bends past the mill." for i in range(60))
    long = submit_messages(long_context, [ChatMessage("user", long_text + "\nSummarize this in one sentence.")],
                           max_tokens=8)
    long_items = timeline(long)
    long_items.thread.join()
    running.cancel.set()
    running_items.thread.join()
    (asked, prompt), = [(t, item) for t, item in long_items if isinstance(item, Prompt)]
    answered = next(t for t, item in long_items if isinstance(item, (Piece, Finish)))
    assert prompt.tokens > 700 and isinstance(long_items[-1][1], Finish)
    meanwhile = sum(1 for t, item in running_items if isinstance(item, Piece) and asked < t < answered)
    steps = prompt.tokens // long_context.options.prefill_chunk  # its prefill takes at least these steps
    assert meanwhile >= steps // 2, (meanwhile, steps)  # prefilled whole, it would be one step: 0 or 1
    assert isinstance(running_items[-1][1], Finish)


def test_a_long_prompt_prefilled_in_slices_answers_as_alone(local, jobs):
    """A prompt longer than RILL_PREFILL_CHUNK that arrives while another turn streams is prefilled
    slice by slice beside the decode steps (on transformers, in the same forward pass): both turns'
    greedy replies equal the same turns alone."""
    long_text = " ".join(f"Item {i} is a {PROMPTS[i % 6].lower()}" for i in range(40)) + " Which item is first?"
    assert len(local.encode_prompt([ChatMessage("user", long_text)], GenerationOptions())[0]) > 2 * local.options.prefill_chunk
    running_alone, _ = alone(local, PROMPTS[1], temperature=0, max_tokens=60)
    long_alone, _ = alone(local, long_text, temperature=0, max_tokens=16)
    running = submit(jobs, local, PROMPTS[1], temperature=0, max_tokens=60)
    seen = []
    while len(seen) < 3:
        item = running.channel.get(timeout=60)
        if isinstance(item, Piece):
            seen.append(item.text)
    long = submit(jobs, local, long_text, temperature=0, max_tokens=16)
    long_reply, finish = collect(long)
    rest, _ = collect(running)
    assert isinstance(finish, Finish)
    assert_greedy(local, long_text, long_reply, long_alone)
    assert_greedy(local, PROMPTS[1], "".join(seen) + rest, running_alone)


def test_a_follow_up_from_the_cached_conversation_answers_as_without_it(local, jobs):
    first = [ChatMessage("user", "Tell me about rivers in two sentences.")]
    reply, _ = collect(submit_messages(jobs, first, max_tokens=40))
    assert reply
    follow_up = [*first, ChatMessage("assistant", reply), ChatMessage("user", "And lakes?")]
    answer, finish = collect(submit_messages(jobs, follow_up, max_tokens=24))
    assert finish.cached_tokens > finish.prompt_tokens // 2  # it did start from the cache
    items = list(local.stream("m", follow_up, GenerationOptions(temperature=0, max_tokens=24), threading.Event()))
    assert items[-1].cached_tokens == 0  # a batch of its own: no cache
    expected = "".join(i for i in items if isinstance(i, str))
    assert_greedy(local, follow_up, answer, expected)
