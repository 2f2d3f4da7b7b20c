"""The Gemini provider against a loopback fake of Gemini's REST API (tests/fake_gemini.py),
through the real server in both async modes. No request leaves the machine."""
import base64
import hashlib
import threading
import time
import uuid

import openai
import pytest
import requests

from rill import create_app
from rill.config import Settings
from rill.providers.base import ChatMessage, GenerationOptions, OutputFormat, Tool
from rill.providers.gemini import GeminiProvider, build_request
from tests.fake_gemini import DELAY, KEY, FakeGemini, fake_gemini
from tests.server import free_port, start_server, stop_server
from tests.sse import SSEStream, decode_all
from tests.test_files import png

slow = pytest.mark.slow  # the tests with a real server, or the fake Gemini server; the rest are fast

NO_LOCAL_MODEL = "/nonexistent/model.gguf"  # the local provider fails at once instead of loading


@pytest.fixture(scope="module")
def fake():
    with fake_gemini() as server:
        yield server


@pytest.fixture(scope="module", params=["eventlet", "threading"])
def server(request, fake, tmp_path_factory):
    srv = start_server(request.param, tmp_path_factory.mktemp("logs"), entry="rill.entry",
                       RILL_GEMINI_BASE_URL=fake.url, RILL_GEMINI_API_KEY=KEY, RILL_MODEL="gemini/gemini-fake",
                       RILL_GEMINI_MODELS="gemini-fake,gemini-2.5-flash", RILL_MODEL_PATH=NO_LOCAL_MODEL,
                       RILL_UPSTREAM_TIMEOUT_SECONDS=10, RILL_RATE_LIMIT="1000 per minute",
                       RILL_MAX_CONCURRENT_TURNS=16)
    deadline = time.monotonic() + 30  # let the local provider give up (it imports torch) so timings are clean
    while time.monotonic() < deadline and any(
            m.get("state") == "loading" for p in requests.get(f"{srv.url}/api/models", timeout=10).json()["providers"]
            for m in p["models"]):
        time.sleep(0.1)
    yield srv
    stop_server(srv)


def chat(server, **body):
    s = SSEStream(f"{server.url}/api/chat/stream", body, timeout=15)
    try:
        return list(s)
    finally:
        s.close()


def sent(fake: FakeGemini, marker: str) -> dict:
    """The request the fake received whose last turn contains `marker`."""
    return next(r for r in reversed(fake.requests)
                if marker in r["body"].get("contents", [{}])[-1].get("parts", [{}])[0].get("text", ""))


def tokens(events):
    return [e.json()["token"] for e in events if e.type == "token"]


def test_request_translation():
    messages = [ChatMessage("system", "Be terse."), ChatMessage("system", "Use French."), ChatMessage("user", "hi"),
                ChatMessage("assistant", "salut"), ChatMessage("user", "again")]
    req = build_request("m", messages, GenerationOptions(max_tokens=7, temperature=0.2, top_p=0.9, seed=5, stop=("END",)))
    assert req["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": "salut"}]},
                               {"role": "user", "parts": [{"text": "again"}]}]
    assert req["config"]["system_instruction"] == "Be terse.\n\nUse French."
    assert {k: req["config"][k] for k in ("temperature", "top_p", "max_output_tokens", "seed", "stop_sequences")} == \
        {"temperature": 0.2, "top_p": 0.9, "max_output_tokens": 7, "seed": 5, "stop_sequences": ["END"]}
    plain = build_request("m", [ChatMessage("user", "x")], GenerationOptions())["config"]
    assert not {"seed", "stop_sequences", "system_instruction"} & set(plain)


def test_a_json_schema_reaches_gemini_and_strict_tools_are_refused():
    from google.genai import types

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    config = build_request("m", [ChatMessage("user", "x")], GenerationOptions(
        output_format=OutputFormat("json_schema", schema)))["config"]
    assert config["response_mime_type"] == "application/json" and config["response_json_schema"] == schema
    types.GenerateContentConfig.model_validate(config)  # the SDK takes it as it is
    strict = GenerationOptions(tools=(Tool("f", "", {"type": "object"}, strict=True),))
    assert "Gemini has no strict function calling): f" in GeminiProvider(Settings()).refuses_schemas("m", strict)


@slow
def test_concurrent_streams_and_health_stay_live(server):
    """Six streams at once, as the server's first Gemini requests (first use is when pydantic
    rebuilds models under a lock: OS threads contending for it under eventlet hang for good),
    while /health answers quickly. With a deadline: a stuck stream still gets keep-alive pings."""
    streams = [SSEStream(f"{server.url}/api/chat/stream", {"message": "go", "model": "gemini/gemini-long"}, timeout=10)
               for _ in range(6)]
    seen, health = [[] for _ in streams], []

    def read(s, out):
        for event in s:
            out.append(event.type)
            if len(out) == 6:
                return

    workers = [threading.Thread(target=read, args=pair, daemon=True) for pair in zip(streams, seen)]
    workers.append(threading.Thread(target=server.time_health, args=(5, 0.02, health), daemon=True))
    try:
        for w in workers:
            w.start()
        deadline = time.monotonic() + 15
        for w in workers:
            w.join(timeout=max(0, deadline - time.monotonic()))
    finally:
        for s in streams:  # leaving only detaches: stop the turns explicitly
            s.close()
            requests.post(f"{server.url}/api/chat/turns/{s.headers['X-Turn-Id']}/cancel", timeout=10)
    assert seen == [["start"] + ["token"] * 5] * 6, seen
    assert len(health) == 5 and max(health) < 0.5, health
    assert server.wait_idle(timeout=10)["active_turns"] == 0


@slow
def test_tokens_stream_in_pieces_with_usage(server, fake):
    marker = uuid.uuid4().hex[:8]
    events = chat(server, message=f"alpha beta gamma delta {marker}", system="Be terse.", model="gemini/gemini-fake",
                  temperature=0.3, top_p=0.8, max_tokens=50)
    assert [e.type for e in events] == ["start"] + ["token"] * 6 + ["done"]
    assert events[0].json()["model"] == "gemini/gemini-fake"
    assert tokens(events) == ["[Be terse.] ", "alpha ", "beta ", "gamma ", "delta ", f"{marker} "]
    arrivals = [e.arrived for e in events if e.type == "token"]
    assert len(set(arrivals)) >= 4 and arrivals[-1] - arrivals[0] >= 2 * DELAY  # one by one, not buffered
    done = events[-1].json()
    assert done["finish_reason"] == "stop" and done["tokens"] == 6
    assert done["usage"] == {"prompt_tokens": 7, "completion_tokens": 6, "cached_tokens": 0}  # the fake counts words
    req = sent(fake, marker)
    assert req["path"] == "/v1beta/models/gemini-fake:streamGenerateContent" and req["query"] == {"alt": ["sse"]}
    assert req["headers"]["x-goog-api-key"] == KEY
    assert req["body"]["systemInstruction"]["parts"] == [{"text": "Be terse."}]
    assert req["body"]["generationConfig"] == {"temperature": 0.3, "topP": 0.8, "maxOutputTokens": 50}


@slow
def test_max_tokens_ends_with_length(server):
    events = chat(server, message="one two three four five", model="gemini/gemini-2.5-flash", max_tokens=3)
    assert tokens(events) == ["one ", "two ", "three "]
    done = events[-1].json()
    assert done["finish_reason"] == "length" and done["usage"]["completion_tokens"] == 3


@slow
def test_history_and_system_reach_gemini(server, fake):
    first = chat(server, message="My name is Zorblat.", model="gemini/gemini-fake")
    sid = first[0].json()["session_id"]
    marker = uuid.uuid4().hex[:8]
    second = chat(server, message=f"What is my name? {marker}", session_id=sid, system="Answer briefly.",
                  model="gemini/gemini-fake")
    assert second[-1].type == "done"
    body = sent(fake, marker)["body"]
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "My name is Zorblat."}]},
        {"role": "model", "parts": [{"text": "".join(tokens(first))}]},
        {"role": "user", "parts": [{"text": f"What is my name? {marker}"}]},
    ]
    assert body["systemInstruction"]["parts"] == [{"text": "Answer briefly."}]


@slow
def test_an_image_reaches_gemini_as_inline_data_with_the_same_bytes(server, fake):
    picture = png(17, 9, (0, 90, 200))
    marker = uuid.uuid4().hex[:8]
    reply = requests.post(f"{server.url}/v1/chat/completions", timeout=15, json={
        "model": "gemini/gemini-fake", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{base64.b64encode(picture).decode()}"}},
            {"type": "text", "text": marker}]}]})
    assert reply.status_code == 200, reply.text
    body = next(r["body"] for r in reversed(fake.requests)
                if {"text": marker} in r["body"].get("contents", [{}])[-1].get("parts", []))
    image, text = body["contents"][-1]["parts"]
    blob = image["inlineData"]  # the SDK leaves the field inside as written: both spellings are proto JSON
    assert text == {"text": marker} and blob.get("mimeType", blob.get("mime_type")) == "image/png"
    assert hashlib.sha256(base64.b64decode(blob["data"])).digest() == hashlib.sha256(picture).digest()


@slow
def test_upstream_error_ends_the_stream_with_its_message(server):
    events = chat(server, message="hi", model="gemini/gemini-nope")
    assert [e.type for e in events] == ["start", "error"]
    error = events[-1].json()["error"]
    assert error["type"] == "upstream_error"
    assert "404 NOT_FOUND" in error["message"] and "models/gemini-nope is not found" in error["message"]


@slow
def test_broken_stream_is_an_error_after_the_pieces(server):
    events = chat(server, message="a b c d e", model="gemini/gemini-broken")
    assert [e.type for e in events] == ["start", "token", "token", "error"]
    assert "stream broke" in events[-1].json()["error"]["message"]


@slow
def test_cancel_stops_the_upstream_request(server, fake):
    s = SSEStream(f"{server.url}/api/chat/stream", {"message": "go", "model": "gemini/gemini-long"}, timeout=15)
    events = iter(s)
    start = next(events).json()
    assert next(events).type == "token"
    assert requests.post(f"{server.url}/api/chat/turns/{start['turn_id']}/cancel", timeout=10).status_code == 202
    rest = list(events)
    s.close()
    assert rest[-1].type == "done" and rest[-1].json()["finish_reason"] == "cancelled"
    assert len(tokens(rest)) < 20
    record = next(r for r in reversed(fake.requests) if r["path"].endswith("gemini-long:streamGenerateContent"))
    deadline = time.monotonic() + 3
    while record["client_left"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record["client_left"] is True  # the connection was dropped, not read to the end


# In-process apps (threading mode) for the configurations that need no running fake.

def app_with(**settings):
    return create_app(Settings(async_mode="threading", model_path=NO_LOCAL_MODEL, session_store="memory",
                               **settings)).test_client()


def test_without_a_key_requests_are_refused_with_the_variable_to_set():
    r = app_with(gemini_api_key="").post("/api/chat/stream", json={"message": "hi", "model": "gemini/gemini-2.5-flash"})
    assert r.status_code == 400
    error = r.get_json()["error"]
    assert error["type"] == "provider_not_configured" and "RILL_GEMINI_API_KEY" in error["message"]


def test_connection_refused_is_a_clean_error_event():
    port = free_port()
    client = app_with(gemini_api_key=KEY, gemini_base_url=f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    r = client.post("/api/chat/stream", json={"message": "hi", "model": "gemini/gemini-2.5-flash"})
    events = decode_all(r.get_data())
    assert time.perf_counter() - started < 5  # no retries
    assert [e.type for e in events] == ["start", "error"]
    error = events[-1].json()["error"]
    assert error["type"] == "upstream_error"
    assert f"cannot connect to Gemini at http://127.0.0.1:{port}" in error["message"]
    assert "refused" in error["message"].lower()


@slow
def test_a_bad_key_is_reported_with_geminis_message(fake):
    client = app_with(gemini_api_key="not-the-key", gemini_base_url=fake.url)
    events = decode_all(client.post("/api/chat/stream", json={"message": "hi", "model": "gemini/gemini-fake"}).get_data())
    assert [e.type for e in events] == ["start", "error"]
    assert "400 INVALID_ARGUMENT: API key not valid" in events[-1].json()["error"]["message"]


@slow
def test_a_stalled_stream_times_out_cleanly(fake):
    client = app_with(gemini_api_key=KEY, gemini_base_url=fake.url, upstream_timeout_seconds=0.5)
    events = decode_all(client.post("/api/chat/stream", json={"message": "a b c", "model": "gemini/gemini-stall"}).get_data())
    assert [e.type for e in events] == ["start", "token", "error"]
    assert "did not answer within 0.5 s (ReadTimeout)" in events[-1].json()["error"]["message"]


@slow
def test_tools_calls_and_thoughts_pass_through_and_results_go_back(server, fake):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    tools = [{"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}}}} for name in ("get_weather", "get_time")]
    messages = [{"role": "user", "content": "weather and time?"}]
    chunks = list(client.chat.completions.create(model="gemini/gemini-tools", messages=messages, tools=tools,
                                                 tool_choice="required", stream=True))
    declared = fake.requests[-1]["body"]
    assert [d["name"] for d in declared["tools"][0]["functionDeclarations"]] == ["get_weather", "get_time"]
    assert declared["toolConfig"]["functionCallingConfig"]["mode"] == "ANY"
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
    assert reasoning == "Which tools fit?"
    assert [(t.index, t.function.name) for t in calls if t.id] == [(0, "get_weather"), (1, "get_time")]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    ids = [t.id for t in calls if t.id]
    messages += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": ids[0], "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                     {"id": ids[1], "type": "function", "function": {"name": "get_time", "arguments": '{"city": "Rome"}'}}]},
                 {"role": "tool", "tool_call_id": ids[0], "content": "sunny"},
                 {"role": "tool", "tool_call_id": ids[1], "content": "noon"}]
    answer = client.chat.completions.create(model="gemini/gemini-tools", messages=messages, tools=tools)
    sent = fake.requests[-1]["body"]["contents"]
    assert [p["functionCall"]["name"] for p in sent[1]["parts"]] == ["get_weather", "get_time"]
    assert [p["functionResponse"] for p in sent[2]["parts"]] == [
        {"name": "get_weather", "response": {"result": "sunny"}}, {"name": "get_time", "response": {"result": "noon"}}]
    assert answer.choices[0].message.content.startswith("Results: ")
