"""Continuous batching on the real model, in-process: batched turns equal the same turns alone."""
import threading
import time

import pytest

from backend.config import Settings
from backend.providers.base import ChatMessage, Failure, Finish, GenerationOptions, Piece, Prompt, ProviderError
from backend.providers.engine import Job
from backend.providers.local import LocalProvider

pytestmark = pytest.mark.slow

PROMPTS = ["Name three colors.", "Write a haiku about rivers.", "What is 2 + 2?", "Describe a cat in one sentence.",
           "List two fruits.", "Say hello in French."]


@pytest.fixture(scope="module")
def local():
    provider = LocalProvider(cache_dir=Settings.from_env().cache_dir, context_tokens=1024)
    provider.load()
    assert provider.state == "ready", provider.error
    return provider


@pytest.fixture(scope="module")
def jobs(local):
    """The provider's own scheduler, fed like the engine feeds it."""
    threading.Thread(target=local.run, daemon=True).start()
    return local


def alone(local, text, **options):
    items = list(local.stream("m", [ChatMessage("user", text)], GenerationOptions(**options), threading.Event()))
    return "".join(i for i in items if isinstance(i, str)), items[-1]


def submit(jobs, local, text, **options):
    job = Job(local, "m", [ChatMessage("user", text)], GenerationOptions(**options))
    jobs.start(job)
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


def test_greedy_batched_equals_alone(local, jobs):
    expected = [alone(local, p, temperature=0, max_tokens=24)[0] for p in PROMPTS]
    submitted = [submit(jobs, local, p, temperature=0, max_tokens=24) for p in PROMPTS]
    got = [collect(j)[0] for j in submitted]
    assert got == expected


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
    assert short == short_alone and finish.reason in ("stop", "length")
    assert "".join(seen) + rest == long_alone


def test_per_turn_sampling_options_hold_in_a_batch(local, jobs):
    seeded_alone, _ = alone(local, PROMPTS[3], temperature=1.2, top_p=0.9, max_tokens=20, seed=7)
    greedy_alone, _ = alone(local, PROMPTS[3], temperature=0, max_tokens=20)
    seeded = submit(jobs, local, PROMPTS[3], temperature=1.2, top_p=0.9, max_tokens=20, seed=7)
    greedy = submit(jobs, local, PROMPTS[3], temperature=0, max_tokens=20)
    short = submit(jobs, local, PROMPTS[3], temperature=0, max_tokens=3)
    stopped = submit(jobs, local, PROMPTS[3], temperature=0, max_tokens=20, stop=(greedy_alone[8:12],))
    assert collect(seeded)[0] == seeded_alone
    assert collect(greedy)[0] == greedy_alone
    text, finish = collect(short)
    assert finish.reason == "length" and finish.completion_tokens == 3
    text, finish = collect(stopped)
    assert finish.reason == "stop_sequence" and text == greedy_alone[:greedy_alone.index(greedy_alone[8:12])]


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
    assert [collect(a)[0], collect(c)[0]] == [expected[0], expected[2]]


def test_a_failing_turn_does_not_take_the_batch_down(local, jobs):
    expected, _ = alone(local, PROMPTS[4], temperature=0, max_tokens=20)
    good = submit(jobs, local, PROMPTS[4], temperature=0, max_tokens=20)
    too_long = submit(jobs, local, "word " * 3000, temperature=0, max_tokens=20)
    bad_sampler = submit(jobs, local, PROMPTS[4], temperature=0.5, top_p=float("nan"), max_tokens=20)
    error = too_long.channel.get(timeout=60)
    while isinstance(error, Prompt):
        error = too_long.channel.get(timeout=60)
    assert isinstance(error, Failure) and error.error.type == "context_length_exceeded"
    assert collect(good)[0] == expected
    _, outcome = collect(bad_sampler)
    assert isinstance(outcome, (ProviderError, Finish))
    assert collect(submit(jobs, local, PROMPTS[4], temperature=0, max_tokens=20))[0] == expected


def test_a_conversation_the_template_rejects_fails_alone(local, jobs, monkeypatch):
    expected, _ = alone(local, PROMPTS[5], temperature=0, max_tokens=12)
    real = local.encode_prompt

    def picky(messages, max_tokens):  # like a template that raises on roles it does not take
        if messages[-1].content == "reject me":
            raise RuntimeError("Conversation roles must alternate")
        return real(messages, max_tokens)

    monkeypatch.setattr(local, "encode_prompt", picky)
    rejected = submit(jobs, local, "reject me", temperature=0, max_tokens=12)
    _, outcome = collect(rejected)
    assert isinstance(outcome, ProviderError) and "alternate" in outcome.message and outcome.status == 400
    assert collect(submit(jobs, local, PROMPTS[5], temperature=0, max_tokens=12))[0] == expected
