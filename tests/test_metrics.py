"""GET /metrics after real requests on each transport, read with prometheus_client's own parser;
the per-request and per-turn log lines (JSON) with their request ids; /livez and /readyz."""
import json
import time
import uuid

import anthropic
import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.server import start_server, stop_server
from tests.sse import SSEStream
from tests.test_socketio import ChatClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server("eventlet", tmp_path_factory.mktemp("metrics"), RILL_LOG_FORMAT="json",
                       RILL_ORPHAN_SECONDS="1")
    yield srv
    stop_server(srv)


def scrape(url: str, headers: dict | None = None) -> dict:
    """{(sample name, sorted labels): value} for every sample."""
    r = requests.get(f"{url}/metrics", headers=headers or {}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_each_transport_counts_its_turns_tokens_and_latencies(server):
    model = "scripted/echo"
    before = scrape(server.url)
    done = {}
    events = list(SSEStream(f"{server.url}/api/chat/stream", {"message": "one two three", "model": model}))
    done["sse"] = events[-1].json()
    done["app"] = requests.post(f"{server.url}/api/chat", json={"message": "four five", "model": model},
                                timeout=30).json()
    client = ChatClient(server.url)
    try:
        turn_id = client.ask(message="six seven eight nine", model=model)["turn_id"]
        done["socketio"] = client.wait_end(turn_id)[-1][2]
    finally:
        client.close()
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    chunks = list(oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "ten eleven"}],
                                             stream=True, stream_options={"include_usage": True}))
    done["openai"] = {"tokens": chunks[-1].usage.completion_tokens,
                      "usage": {"prompt_tokens": chunks[-1].usage.prompt_tokens}}
    an = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    with an.messages.stream(model=model, max_tokens=50, messages=[{"role": "user", "content": "twelve"}]) as s:
        final = s.get_final_message()
    done["anthropic"] = {"tokens": final.usage.output_tokens, "usage": {"prompt_tokens": final.usage.input_tokens}}
    after = scrape(server.url)
    for api, d in done.items():
        labels = {"model": model, "api": api}
        assert delta(before, after, "rill_request_finished_total", finished_reason="stop", **labels) == 1, api
        assert delta(before, after, "rill_generation_tokens_total", **labels) == d["tokens"] > 0, api
        assert delta(before, after, "rill_prompt_tokens_total", **labels) == d["usage"]["prompt_tokens"], api
        for histogram in ("rill_time_to_first_token_seconds", "rill_e2e_request_latency_seconds",
                          "rill_request_queue_time_seconds"):
            assert delta(before, after, f"{histogram}_count", **labels) == 1, (api, histogram)
        assert delta(before, after, "rill_inter_token_latency_seconds_count", **labels) == d["tokens"] - 1, api
        assert value(after, "rill_open_streams", api=api) == 0, api
    assert value(after, "rill_num_requests_running", model=model) == 0
    assert value(after, "rill_num_requests_waiting", model=model) == 0


def test_live_gauges_resumes_orphans_and_upstream_errors(server):
    before = scrape(server.url)
    stream = SSEStream(f"{server.url}/api/chat/stream", {"message": "wait", "model": "scripted/hold"})
    start = next(iter(stream)).json()
    during = scrape(server.url)
    assert value(during, "rill_open_streams", api="sse") == 1
    assert value(during, "rill_num_requests_waiting", model="scripted/hold") == 1  # no word from it yet
    follower = SSEStream(f"{server.url}/api/chat/turns/{start['turn_id']}/events", None)
    next(iter(follower))
    assert delta(before, scrape(server.url), "rill_resumes_total", api="sse") == 1
    stream.close()
    follower.close()  # nobody reads it now: cancelled after RILL_ORPHAN_SECONDS
    deadline = time.monotonic() + 15
    while delta(before, scrape(server.url), "rill_request_finished_total", model="scripted/hold", api="sse",
                finished_reason="cancelled") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    failed = list(SSEStream(f"{server.url}/api/chat/stream", {"message": "x", "model": "scripted/fail"}))
    assert failed[-1].type == "error"
    after = scrape(server.url)
    assert delta(before, after, "rill_upstream_errors_total", provider="scripted") == 1
    assert delta(before, after, "rill_request_finished_total", model="scripted/fail", api="sse",
                 finished_reason="error") == 1
    assert delta(before, after, "rill_orphan_cancels_total") == 1
    assert value(after, "rill_open_streams", api="sse") == 0
    assert value(after, "rill_num_requests_waiting", model="scripted/hold") == 0


def test_the_local_model_reports_its_batch_sizes(server):
    before = scrape(server.url)
    requests.post(f"{server.url}/api/chat", json={"message": "Hi", "max_tokens": 8, "temperature": 0},
                  timeout=120).raise_for_status()
    after = scrape(server.url)
    local = next(labels for name, labels in after if name == "rill_batch_size_count")
    steps = delta(before, after, "rill_batch_size_count", **dict(local))
    assert steps >= 7 and delta(before, after, "rill_batch_size_sum", **dict(local)) == steps  # one row each step


def test_request_and_turn_log_lines_carry_the_request_id_and_no_text(server):
    rid = f"test-{uuid.uuid4().hex}"
    r = requests.post(f"{server.url}/api/chat", json={"message": "secret words here", "model": "scripted/echo"},
                      headers={"X-Request-Id": rid}, timeout=30)
    assert r.headers["X-Request-Id"] == rid
    made = requests.get(f"{server.url}/health", headers={"X-Request-Id": "bad id with spaces"}, timeout=10)
    assert made.headers["X-Request-Id"] != "bad id with spaces" and len(made.headers["X-Request-Id"]) == 32
    time.sleep(0.5)
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == rid]
    request_line = next(line for line in mine if line["message"] == "request")
    assert request_line["path"] == "/api/chat" and request_line["status"] == 200 and request_line["duration_ms"] > 0
    turn_line = next(line for line in mine if line["message"] == "turn finished")
    assert turn_line["turn_id"] == r.json()["turn_id"] and turn_line["model"] == "scripted/echo"
    assert turn_line["completion_tokens"] == r.json()["tokens"] and turn_line["status"] == "complete"
    assert turn_line["ttft_ms"] is not None and turn_line["user"] == "anonymous"
    assert "secret" not in server.log.read_text()  # no message or reply text without RILL_LOG_CONTENT=1


def test_livez_and_readyz(server):
    assert requests.get(f"{server.url}/livez", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{server.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"] == {"model": "ready", "threads": "ok", "usage": "ok"}


def test_workers_sharing_a_multiprocess_directory_report_one_set_of_figures(tmp_path):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    a, b = (start_server("threading", tmp_path, PROMETHEUS_MULTIPROC_DIR=str(shared)) for _ in range(2))
    try:
        for srv in (a, b):
            requests.post(f"{srv.url}/api/chat", json={"message": "x y", "model": "scripted/echo"},
                          timeout=30).raise_for_status()
        for srv in (a, b):
            samples = scrape(srv.url)
            assert value(samples, "rill_request_finished_total", model="scripted/echo", api="app",
                         finished_reason="stop") == 2
    finally:
        stop_server(a)
        stop_server(b)
