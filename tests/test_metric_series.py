"""Every series of a model exists at 0 from the start (and from when a model is loaded later), so
dashboards and alerts read 0 after a restart, not "no data"."""
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


def test_the_fast_observe_counts_as_the_librarys_own():
    """Every value, on a bound or between two, beyond the last or below the first, lands in the
    same bucket, and the sums agree."""
    from prometheus_client import CollectorRegistry, Histogram

    from rill.metrics import TOKEN_GAP, fast_observe

    registry = CollectorRegistry()
    ours, theirs = (Histogram(name, "gaps", ["model"], buckets=TOKEN_GAP, registry=registry).labels("m")
                    for name in ("ours", "theirs"))
    observe = fast_observe(ours)
    values = [0.0, 0.0005, *TOKEN_GAP, *(b * 1.01 for b in TOKEN_GAP), 0.0099, 25.0, 1e9]
    for value in values:
        observe(value)
        theirs.observe(value)
    samples = {(s.name, s.labels.get("le")): s.value for family in registry.collect() for s in family.samples}
    for (name, le), value in samples.items():
        if name.startswith("ours") and not name.endswith("_created"):
            assert samples[(name.replace("ours", "theirs", 1), le)] == value, (name, le)
    assert samples[("ours_count", None)] == len(values)
