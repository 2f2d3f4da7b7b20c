"""The openai provider against real upstreams on loopback, through real servers in both async modes.

The upstream is either a second Rill (its /v1 API, serving the real local model) or a fake
OpenAI server written below, for what a real one will not do on demand: fail with HTTP 500 or
401, break off mid-stream, never answer. No request leaves the machine.
"""
import base64
import hashlib
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest
import requests

from rill.conversations.images import normalise
from rill.providers.token_count import count_tokens

from tests.server import free_port, start_server, stop_server
from tests.sse import SSEStream
from tests.test_files import png
from tests.test_tools import ANTHROPIC_TOOLS, TOOLS, accumulate

pytestmark = pytest.mark.slow

A_MODEL = "local/smollm2-135m-instruct"  # server A's model; server B asks for openai/<this>
NO_LOCAL_MODEL = "/nonexistent/model.gguf"  # the B servers' own local model fails at once
TIMEOUT = 2  # RILL_UPSTREAM_TIMEOUT_SECONDS of the server in front of the fake
GREEDY = {"temperature": 0, "max_tokens": 16}
BURST = 16  # streams at once: the servers' per-user cap (RILL_MAX_CONCURRENT_TURNS in tests.server)


# -- a fake OpenAI-compatible upstream ---------------------------------------------------------

class FakeOpenAI(ThreadingHTTPServer):
    """POST /v1/chat/completions, behaving by model name:
    ok        "hello", " world", finish_reason length, usage 11/2
    filtered  "x", finish_reason content_filter
    burst     10 pieces 0.3 s apart, held until BURST requests are in, so they run in lockstep
    long      300 pieces 0.02 s apart; sets `client_left` when the client hangs up
    fail-500  HTTP 500 with an OpenAI error body;  bad-key  HTTP 401
    cut-chunked / cut-close  two pieces, then the socket is closed (chunked / close-delimited body)
    parallel  two tool calls whose fragments interleave by index (ids and names only in the first)
    no-usage  three pieces and no usage chunk, whatever the request asks for
    hang      reads the request and never answers
    """

    daemon_threads = True
    request_queue_size = 64  # the default backlog of 5 resets connections in a burst

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.requests: list[dict] = []
        self.closing = threading.Event()
        self.client_left = threading.Event()
        self.burst = threading.Barrier(BURST, timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"


def call_fragment(index: int, arguments: str, name: str | None = None) -> dict:
    fragment = {"index": index, "function": {"arguments": arguments}}
    if name:
        fragment.update(id=f"call_{name}", type="function", function={"name": name, "arguments": arguments})
    return {"tool_calls": [fragment]}


PARALLEL_CALLS = [call_fragment(0, "", "get_weather"), call_fragment(1, "", "get_time"),
                  call_fragment(0, '{"city": '), call_fragment(1, '{"zone": '), call_fragment(0, '"Paris"}'),
                  call_fragment(1, '"CET"}')]


def chunk(model: str, delta: dict, finish_reason=None) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: FakeOpenAI

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body})
        model = body.get("model", "")
        if self.path != "/v1/chat/completions":
            return self.send_json(404, "no such route", "invalid_request_error")
        if model == "fail-500":
            return self.send_json(500, "the fake upstream fell over", "server_error")
        if model == "bad-key":
            return self.send_json(401, "Incorrect API key provided: test-key", "invalid_request_error")
        if model == "burst":
            try:
                self.server.burst.wait()
            except threading.BrokenBarrierError:
                pass
        if model == "hang":
            self.server.closing.wait(60)
            self.close_connection = True
            return
        pieces, reason, delay = {"ok": (["hello", " world"], "length", 0), "filtered": (["x"], "content_filter", 0),
                                 "burst": ([f"p{i} " for i in range(10)], "stop", 0.3),
                                 "long": ([f"w{i} " for i in range(300)], "stop", 0.02),
                                 "cut-chunked": (["one ", "two "], None, 0),
                                 "cut-close": (["one ", "two "], None, 0),
                                 "parallel": (PARALLEL_CALLS, "tool_calls", 0),
                                 "no-usage": (["a river ", "runs to ", "the sea"], "stop", 0)}.get(model, ([], None, 0))
        chunked = model != "cut-close"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding" if chunked else "Connection", "chunked" if chunked else "close")
        self.end_headers()
        try:
            self.event(chunk(model, {"role": "assistant", "content": ""}), chunked)
            for piece in pieces:
                time.sleep(delay)
                self.event(chunk(model, piece if isinstance(piece, dict) else {"content": piece}), chunked)
            if model.startswith("cut-"):
                self.close_connection = True  # no last chunk: the socket closes mid-body
                return
            self.event(chunk(model, {}, reason), chunked)
            if model == "no-usage":
                self.write(b"data: [DONE]\n\n", chunked)
                self.wfile.write(b"0\r\n\r\n")
                return
            usage = {"prompt_tokens": 11, "completion_tokens": len(pieces), "total_tokens": 11 + len(pieces)}
            self.event({**chunk(model, {}), "choices": [], "usage": usage}, chunked)
            self.write(b"data: [DONE]\n\n", chunked)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.server.client_left.set()
            self.close_connection = True

    def event(self, payload: dict, chunked: bool) -> None:
        self.write(b"data: " + json.dumps(payload).encode() + b"\n\n", chunked)

    def write(self, data: bytes, chunked: bool) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        self.wfile.flush()

    def send_json(self, status: int, message: str, kind: str) -> None:
        data = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# -- servers -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake():
    server = FakeOpenAI()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.closing.set()
    server.shutdown()
    server.server_close()


def in_front_of(base_url: str, default: str, **env) -> dict:
    """Environment of a Rill whose openai provider points at `base_url`, with no local model."""
    return dict(entry="rill.entry", RILL_OPENAI_BASE_URL=base_url, RILL_OPENAI_API_KEY="test-key",
                RILL_MODEL=f"openai/{default}", RILL_MODEL_PATH=NO_LOCAL_MODEL, **env)


def settled(server):
    """Wait until the server's local provider gave up (it imports torch first), so timings are clean."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
            m.get("state") == "loading" for p in requests.get(f"{server.url}/api/models", timeout=10).json()["providers"]
            for m in p["models"]):
        time.sleep(0.1)
    return server


class Servers:
    """A: a plain Rill with the real model and no OpenAI key (the session's). B: a Rill whose
    upstream is A. faulty: in front of the fake (TIMEOUT s timeout). refused: in front of a port
    nobody listens on."""

    def __init__(self, mode, logs, fake, plain):
        self.mode = mode
        self.refused_url = f"http://127.0.0.1:{free_port()}/v1"
        with ThreadPoolExecutor(2) as pool:  # leaving the block waits for both
            futures = [pool.submit(start_server, mode, logs,
                                   **in_front_of(fake.url, "ok", RILL_UPSTREAM_TIMEOUT_SECONDS=TIMEOUT)),
                       pool.submit(start_server, mode, logs, **in_front_of(self.refused_url, "anything"))]
        self.started = [f.result() for f in futures if f.exception() is None]
        if len(self.started) < len(futures):
            self.stop()
            raise next(f.exception() for f in futures if f.exception() is not None)
        self.faulty, self.refused = self.started
        self.a = plain
        try:
            self.b = start_server(mode, logs, **in_front_of(f"{self.a.url}/v1", A_MODEL))
            self.started.append(self.b)
            for server in (self.faulty, self.refused, self.b):
                settled(server)
        except Exception:
            self.stop()
            raise

    def stop(self):
        for server in self.started:
            stop_server(server)


@pytest.fixture(scope="module", params=["eventlet", "threading"])
def rill(request, fake, tmp_path_factory, servers):
    group = Servers(request.param, tmp_path_factory.mktemp(f"logs-{request.param}"), fake, servers(request.param))
    yield group
    group.stop()


def chat(server, timeout=15, **body) -> tuple[list, float]:
    started = time.perf_counter()
    s = SSEStream(f"{server.url}/api/chat/stream", body, timeout=timeout)
    try:
        events = [e for e in s if e.type != "ping"]
    finally:
        s.close()
    return events, time.perf_counter() - started


def tokens(events) -> list[str]:
    return [e.json()["token"] for e in events if e.type == "token"]


def assert_healthy(server):
    assert server.health()["status"] == "ok"
    assert server.wait_idle(timeout=10)["active_turns"] == 0


# -- the key risk first, on fresh servers: SDK streams side by side, the server stays live -----

def test_concurrent_streams_while_health_answers(rill, fake):
    """BURST streams in lockstep (under eventlet, SDK calls from several OS threads at once hang
    on green locks) while /health keeps answering quickly. Read with a deadline: a stuck stream
    still gets keep-alive pings, so it would never time out by itself."""
    fake.burst.reset()
    results, health = [None] * BURST, []

    def read(i):
        results[i] = chat(rill.faulty, timeout=30, message="go", model="openai/burst")[0]

    workers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(BURST)]
    workers.append(threading.Thread(target=rill.faulty.time_health, args=(10, 0.1, health), daemon=True))
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=max(0.1, 30 - (time.perf_counter() - started)))
    assert not any(w.is_alive() for w in workers), "a stream hung"
    assert time.perf_counter() - started < 12  # side by side: one after another would take 48 s
    for events in results:
        assert [e.type for e in events] == ["start"] + ["token"] * 10 + ["done"], events[-1].data
        assert tokens(events) == [f"p{i} " for i in range(10)]
    assert len(health) == 10 and max(health) < 1.0, health  # a blocked hub: until the streams end
    assert_healthy(rill.faulty)


# -- (a) a second Rill as the upstream ---------------------------------------------------------

def test_stream_through_a_second_rill_equals_its_own_reply(rill):
    message = "List two fruits."
    events, _ = chat(rill.b, message=message, model=f"openai/{A_MODEL}", **GREEDY)
    kinds = [e.type for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("token") >= 3, kinds
    assert events[0].json()["model"] == f"openai/{A_MODEL}"
    done = events[-1].json()
    assert done["finish_reason"] in ("stop", "length")
    assert done["usage"]["prompt_tokens"] > 5 and done["usage"]["completion_tokens"] >= 3

    direct = requests.post(f"{rill.a.url}/api/chat", json={"message": message, "model": A_MODEL, **GREEDY}, timeout=60)
    assert direct.status_code == 200
    assert "".join(tokens(events)) == direct.json()["reply"] != ""
    assert done["usage"]["completion_tokens"] == direct.json()["usage"]["completion_tokens"]


def test_openai_sdk_against_the_server_in_front(rill):
    client = openai.OpenAI(base_url=f"{rill.b.url}/v1", api_key="unused", max_retries=0, timeout=60)
    message = [{"role": "user", "content": "Name a color."}]
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=f"openai/{A_MODEL}", messages=message, stream=True, **GREEDY) if c.choices]
    whole = client.chat.completions.create(model=f"openai/{A_MODEL}", messages=message, **GREEDY)
    direct = requests.post(f"{rill.a.url}/v1/chat/completions",
                           json={"model": A_MODEL, "messages": message, **GREEDY}, timeout=60).json()
    assert len([p for p in pieces if p]) >= 3
    assert "".join(pieces) == whole.choices[0].message.content == direct["choices"][0]["message"]["content"]
    assert whole.usage.completion_tokens == direct["usage"]["completion_tokens"]


# -- the request sent and the answer read, against the fake --------------------------------------

def test_request_options_reach_the_upstream_and_usage_comes_back(rill, fake):
    marker = uuid.uuid4().hex
    r = requests.post(f"{rill.faulty.url}/v1/chat/completions", timeout=15, json={
        "model": "openai/ok", "temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "seed": 42, "stop": ["END"],
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": marker}]})
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["choices"][0]["message"]["content"] == "hello world"
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"] == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13,
                              "prompt_tokens_details": {"cached_tokens": 0}}
    sent = next(q for q in fake.requests if q["body"]["messages"][-1]["content"] == marker)
    assert sent["headers"]["authorization"] == "Bearer test-key"
    assert sent["body"] == {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": marker}],
        "model": "ok", "max_tokens": 7, "seed": 42, "stop": ["END"], "stream": True,
        "stream_options": {"include_usage": True}, "temperature": 0.5, "top_p": 0.9}


def test_a_response_format_from_any_api_reaches_the_upstream_as_response_format(rill, fake):
    schema = {"type": "object", "properties": {"n": {"type": "integer", "not": {"const": 3}}}, "required": ["n"]}
    bodies = [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": ""}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "count", "schema": schema, "strict": True}}}),
        ("/v1/responses", {"input": "", "store": False,
                           "text": {"format": {"type": "json_schema", "name": "count", "schema": schema}}}),
        ("/v1/messages", {"max_tokens": 7, "messages": [{"role": "user", "content": ""}],
                          "output_config": {"format": {"type": "json_schema", "schema": schema}}}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": ""}],
                                  "response_format": {"type": "json_object"}}),
    ]
    for route, body in bodies:
        marker = uuid.uuid4().hex
        body = json.loads(json.dumps(body).replace('""', json.dumps(marker), 1))
        r = requests.post(f"{rill.faulty.url}{route}", json={"model": "openai/ok", **body}, timeout=15)
        assert r.status_code == 200, (route, r.text)
        sent = next(q for q in fake.requests if marker in json.dumps(q["body"]["messages"]))
        expected = {"type": "json_object"} if "json_object" in json.dumps(body) else {
            "type": "json_schema", "json_schema": {"name": "output" if route == "/v1/messages" else "count",
                                                   "description": "", "schema": schema,
                                                   "strict": route != "/v1/responses"}}
        assert sent["body"]["response_format"] == expected, route


def image_sent(fake, marker: str) -> tuple[dict, str]:
    """The image_url part of the request whose last message's text is `marker`, and the SHA-256 of
    the bytes its data: URL holds."""
    sent = next(q for q in fake.requests if q["body"]["messages"][-1]["content"][-1:] == [
        {"type": "text", "text": marker}])
    part = sent["body"]["messages"][-1]["content"][0]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/")
    return part, hashlib.sha256(base64.b64decode(part["image_url"]["url"].split(",", 1)[1])).hexdigest()


def test_images_reach_the_upstream_as_the_bytes_each_sdk_sent_and_an_upload_as_normalised(rill, fake, tmp_path):
    picture = png(33, 21, (250, 120, 0))
    digest, b64 = hashlib.sha256(picture).hexdigest(), base64.b64encode(picture).decode()
    markers = [uuid.uuid4().hex for _ in range(3)]
    openai.OpenAI(base_url=f"{rill.faulty.url}/v1", api_key="unused", max_retries=0).chat.completions.create(
        model="openai/ok", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}", "detail": "high"}},
            {"type": "text", "text": markers[0]}]}])
    part, sent_digest = image_sent(fake, markers[0])
    assert sent_digest == digest and part["image_url"]["detail"] == "high"  # the part as given
    anthropic.Anthropic(base_url=rill.faulty.url, api_key="unused", max_retries=0).messages.create(
        model="openai/ok", max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64}},
            {"type": "text", "text": markers[1]}]}])
    assert image_sent(fake, markers[1])[1] == digest  # Anthropic's block in OpenAI's shape
    uploaded = requests.post(f"{rill.faulty.url}/api/files", files={"file": ("orange.png", picture)}, timeout=15)
    assert uploaded.status_code == 201, uploaded.text
    events, _ = chat(rill.faulty, message=markers[2], model="openai/ok", files=[uploaded.json()["id"]])
    assert events[-1].type == "done", events[-1].data
    (tmp_path / "orange.png").write_bytes(picture)
    assert image_sent(fake, markers[2])[1] == hashlib.sha256(normalise(tmp_path / "orange.png", "x", 1024)[0]).hexdigest()


def test_other_finish_reasons_end_as_stop(rill):
    events, _ = chat(rill.faulty, message="hi", model="openai/filtered")
    assert tokens(events) == ["x"] and events[-1].json()["finish_reason"] == "stop"


def test_cancel_closes_the_upstream_connection(rill, fake):
    fake.client_left.clear()
    s = SSEStream(f"{rill.faulty.url}/api/chat/stream", {"message": "go", "model": "openai/long"}, timeout=15)
    events = iter(s)
    start = next(events).json()
    assert next(events).type == "token"
    assert requests.post(f"{rill.faulty.url}/api/chat/turns/{start['turn_id']}/cancel", timeout=10).status_code == 202
    rest = [e for e in events if e.type != "ping"]
    s.close()
    assert rest[-1].type == "done" and rest[-1].json()["finish_reason"] == "cancelled"
    assert len(tokens(rest)) < 50
    assert fake.client_left.wait(5)  # the fake's next write failed: the connection was dropped
    assert_healthy(rill.faulty)


def test_interleaved_parallel_calls_stay_two_calls_on_every_protocol(rill):
    """The upstream streams two calls' fragments interleaved by index: each protocol still has
    exactly those two calls, with their ids, names and whole JSON arguments."""
    expected = [("call_get_weather", "get_weather", {"city": "Paris"}), ("call_get_time", "get_time", {"zone": "CET"})]
    messages = [{"role": "user", "content": "weather and time?"}]
    client = openai.OpenAI(base_url=f"{rill.faulty.url}/v1", api_key="x", max_retries=0, timeout=15)
    streamed = accumulate(client.chat.completions.create(model="openai/parallel", messages=messages, tools=TOOLS,
                                                         stream=True))
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in streamed["calls"].values()] == expected
    assert streamed["finish_reason"] == "tool_calls"
    whole = client.chat.completions.create(model="openai/parallel", messages=messages, tools=TOOLS)
    assert [(c.id, c.function.name, json.loads(c.function.arguments))
            for c in whole.choices[0].message.tool_calls] == expected

    claude = anthropic.Anthropic(base_url=rill.faulty.url, api_key="x", max_retries=0, timeout=15)
    with claude.messages.stream(model="openai/parallel", max_tokens=50, messages=messages,
                                tools=ANTHROPIC_TOOLS) as stream:
        final = stream.get_final_message()
    assert [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"] == expected
    assert final.stop_reason == "tool_use"

    events, _ = chat(rill.faulty, message="weather and time?", model="openai/parallel")
    starts = [e.json() for e in events if e.type == "tool_call_start"]
    assert [(s["index"], s["id"], s["name"]) for s in starts] == [(n, i, name) for n, (i, name, _) in enumerate(expected)]
    arguments = ["".join(e.json()["arguments"] for e in events if e.type == "tool_call_delta" and e.json()["index"] == n)
                 for n in range(2)]
    assert [json.loads(a) for a in arguments] == [args for *_, args in expected]
    assert [e.json()["index"] for e in events if e.type == "tool_call_end"] == [0, 1]


def test_an_upstream_that_reports_no_usage_gets_rills_count_marked_as_such(rill):
    events, _ = chat(rill.faulty, message="a question", model="openai/no-usage")
    assert tokens(events) == ["a river ", "runs to ", "the sea"]
    done = events[-1].json()
    reply_tokens = count_tokens("a river runs to the sea", 3)
    assert reply_tokens > 3  # counted with a vocabulary, not by pieces
    assert done["tokens"] == done["usage"]["completion_tokens"] == reply_tokens
    assert done["usage"]["prompt_tokens"] > 0 and done["usage"]["counted_by"] == "rill"
    rows = requests.get(f"{rill.faulty.url}/api/usage", timeout=10).json()["rows"]
    assert sum(r["completion_tokens"] for r in rows if r["model"] == "openai/no-usage") >= reply_tokens
    reported, _ = chat(rill.faulty, message="hi", model="openai/ok")  # usage sent: the upstream's, unmarked
    assert reported[-1].json()["usage"] == {"prompt_tokens": 11, "completion_tokens": 2, "cached_tokens": 0}


# -- (b) failures: a clean `error` event that says what happened, soon, and the server goes on ----

def assert_error_event(events, message_parts, pieces=0):
    assert [e.type for e in events] == ["start"] + ["token"] * pieces + ["error"], [e.type for e in events]
    error = events[-1].json()["error"]
    assert error["type"] == "upstream_error"
    for part in message_parts:
        assert part in error["message"], error["message"]
    return error["message"]


def test_connection_refused(rill):
    events, took = chat(rill.refused, message="hi", model="openai/anything")
    assert_error_event(events, [f"cannot reach the upstream at {rill.refused_url}: ", "refused"])
    assert took < 5
    assert_healthy(rill.refused)


def test_http_500(rill):
    events, took = chat(rill.faulty, message="hi", model="openai/fail-500")
    assert_error_event(events, ["upstream returned HTTP 500: the fake upstream fell over"])
    assert took < 5
    assert_healthy(rill.faulty)


def test_http_401_names_the_key_variable(rill):
    events, _ = chat(rill.faulty, message="hi", model="openai/bad-key")
    assert_error_event(events, ["upstream returned HTTP 401: Incorrect API key provided", "RILL_OPENAI_API_KEY"])


@pytest.mark.parametrize("model", ["cut-chunked", "cut-close"])
def test_stream_cut_in_the_middle(rill, model):
    events, took = chat(rill.faulty, message="hi", model=f"openai/{model}")
    message = assert_error_event(events, ["the upstream stream broke off after 2 pieces: "], pieces=2)
    assert tokens(events) == ["one ", "two "]
    if model == "cut-close":  # a close-delimited body just ends: no finish_reason is the tell
        assert "without a finish_reason" in message
    else:
        assert "incomplete chunked read" in message
    assert took < 5
    assert_healthy(rill.faulty)


def test_upstream_that_never_answers_times_out(rill):
    events, took = chat(rill.faulty, message="hi", model="openai/hang")
    assert_error_event(events, [f"the upstream did not answer within {TIMEOUT} s"])
    assert TIMEOUT - 0.5 < took < TIMEOUT + 3
    assert_healthy(rill.faulty)
    events, _ = chat(rill.faulty, message="hi", model="openai/ok")  # and it still serves
    assert tokens(events) == ["hello", " world"]


# -- (c) no key --------------------------------------------------------------------------------

def test_without_a_key_the_request_is_refused_naming_the_variable(rill):
    r = requests.post(f"{rill.a.url}/api/chat/stream", json={"message": "hi", "model": "openai/gpt-4o"}, timeout=10)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "provider_not_configured" and "RILL_OPENAI_API_KEY" in error["message"]
    r = requests.post(f"{rill.a.url}/v1/chat/completions", timeout=10,
                      json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and "RILL_OPENAI_API_KEY" in r.json()["error"]["message"]
    listing = requests.get(f"{rill.a.url}/api/models", timeout=10).json()["providers"]
    assert next(p for p in listing if p["name"] == "openai")["available"] is False
