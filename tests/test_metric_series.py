"""Every series of a model exists at 0 from the start (and from when a model is loaded later), so
dashboards and alerts read 0 after a restart, not "no data"."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

APIS = ("sse", "app", "socketio", "openai", "anthropic")  # the api label, as the README lists it


def series(client) -> dict:
    text = client.get("/metrics").get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def assert_declared(samples: dict, model: str) -> None:
    for api in APIS:
        labels = (("api", api), ("model", model))
        assert samples[("rill_time_to_first_token_seconds_count", labels)] == 0
        assert samples[("rill_generation_tokens_total", labels)] == 0
        assert samples[("rill_request_finished_total", (*labels[:1], ("finished_reason", "error"), *labels[1:]))] == 0
    assert samples[("rill_num_requests_running", (("model", model),))] == 0


def test_a_models_series_exist_before_its_first_turn(make_app, tmp_path):
    client = make_app(model_path=str(tmp_path / "declared-at-start.gguf")).test_client()
    assert_declared(series(client), "local/declared-at-start")


def test_a_model_loaded_later_gets_its_series_when_it_is_added(client, tmp_path):
    path = tmp_path / "loaded-later.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    assert ("rill_generation_tokens_total", (("api", "sse"), ("model", "local/loaded-later"))) not in series(client)
    assert client.post("/api/models/load", json={"path": str(path)}).status_code == 202
    assert_declared(series(client), "local/loaded-later")


def test_observe_all_counts_as_the_librarys_own():
    """Every value, on a bound or between two, beyond the last or below the first, lands in the
    same bucket, and the sums agree, observed in batches (a turn tells its gaps GAPS_HELD at a time)."""
    from prometheus_client import CollectorRegistry, Histogram

    from rill.metrics import TOKEN_GAP, observe_all

    registry = CollectorRegistry()
    ours, theirs = (Histogram(name, "gaps", ["model"], buckets=TOKEN_GAP, registry=registry).labels("m")
                    for name in ("ours", "theirs"))
    values = [0.0, 0.0005, *TOKEN_GAP, *(b * 1.01 for b in TOKEN_GAP), 0.0099, 25.0, 1e9]
    for batch in (values[:7], [], values[7:]):
        observe_all(ours, batch)
    for value in values:
        theirs.observe(value)
    samples = {(s.name, s.labels.get("le")): s.value for family in registry.collect() for s in family.samples}
    for (name, le), value in samples.items():
        if name.startswith("ours") and not name.endswith("_created"):
            theirs_value = samples[(name.replace("ours", "theirs", 1), le)]
            if name.endswith("_sum"):  # a batch's sum is added at once: another order of float additions
                assert theirs_value == pytest.approx(value, rel=1e-12)
            else:
                assert theirs_value == value, (name, le)
    assert samples[("ours_count", None)] == len(values)


def test_a_turn_tells_its_gaps_in_batches_and_the_rest_at_its_end(app, monkeypatch):
    """The inter-token series lags a streaming reply by less than GAPS_HELD gaps, and holds every
    gap once the turn has ended."""
    from rill.chat import turn as turns
    from rill.chat.turn import GAPS_HELD, Turn
    from rill.metrics import INTER_TOKEN_LATENCY
    from rill.providers.base import ChatMessage, Finish, GenerationOptions, Job, Piece
    from tests.test_turn_readers import Held, produce

    def told() -> float:
        return next(s.value for family in INTER_TOKEN_LATENCY.collect() for s in family.samples
                    if s.name.endswith("_count") and s.labels == {"model": "held/gaps", "api": "sse"})

    monkeypatch.setattr(turns, "READER_GRACE", 60)  # the reader writes every piece, however slowly it reads
    services, provider = app.extensions["rill"], Held()
    turn = Turn(services, Job(provider, "gaps", [ChatMessage("user", "hi")], GenerationOptions()), "gaps-turn")
    services.turns.add(turn)
    job, pieces = provider.jobs.get(timeout=10), 2 * GAPS_HELD + 8
    reader = turn.follow(keepalive=10)
    assert [e.kind for e in next(reader)] == ["start"]  # from here the reader writes each piece as it reads
    produce(job, [*(Piece("x") for _ in range(pieces)), Finish("stop", 1, pieces)], every=0.002)
    counts = {}
    for event in (e for batch in reader for e in batch):
        if event.kind == "token" and event.data["count"] % 8 in (0, 1):  # told() takes milliseconds
            counts[event.data["count"]] = told()
    assert all(told % GAPS_HELD == 0 for told in counts.values()), {c: t for c, t in counts.items() if t % GAPS_HELD}
    assert all(count - 1 - told < GAPS_HELD for count, told in counts.items()), counts  # less than a batch behind
    assert counts[pieces] == 2 * GAPS_HELD  # the rest waits for the end
    assert told() == pieces - 1
