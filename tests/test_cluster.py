"""Several workers as one service: real redis-server, real PostgreSQL (the threads), real workers
(the real server with the scripted provider beside the local model), real nginx in front."""
import os
import signal
import threading
import time
import uuid

import openai
import pytest
import requests
import socketio

from deploy.cluster import render_nginx, start_nginx, wait_healthy
from tests.redis_server import RedisServer
from tests.mcp_tools import STDIO, config_file
from tests.server import free_port, start_server, stop_server
from tests.sse import SSEStream
from tests.test_socketio import ChatClient, hang_up

pytestmark = pytest.mark.slow


DATABASE = {}  # the module's PostgreSQL database, which every worker of a test shares


def worker(tmp_path, redis_url: str, **env):
    return start_server("eventlet", tmp_path, RILL_REDIS_URL=redis_url, RILL_DATABASE_URL=DATABASE["url"], **env)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_server):
    """Redis, PostgreSQL, workers A and B, and nginx in front of both."""
    directory = tmp_path_factory.mktemp("cluster")
    DATABASE["url"] = postgres_server.database(f"cluster{uuid.uuid4().hex}")
    redis_server = RedisServer(directory)
    tools = config_file(directory / "mcp.json", ask={**STDIO, "ask_first": True})
    a, b = (worker(directory, redis_server.url, RILL_MAX_CONCURRENT_TURNS="3", RILL_MCP_CONFIG=tools,
                   RILL_DATA_DIR=directory / "shared-data")  # uploads live in one directory both workers see
            for _ in range(2))
    port = free_port()
    nginx = start_nginx(render_nginx(directory / "nginx", f"127.0.0.1:{port}", [a.url.rsplit(":", 1)[1],
                                                                               b.url.rsplit(":", 1)[1]]))
    front = f"http://127.0.0.1:{port}"
    wait_healthy(front, nginx, seconds=10)
    yield a, b, front, redis_server
    nginx.terminate()
    for server in (a, b):
        stop_server(server)
    redis_server.stop()


def ask(url: str, message: str, model: str = "scripted/long", **body) -> SSEStream:
    return SSEStream(f"{url}/api/chat/stream", {"message": message, "model": model, **body})


def raw_events(url: str, turn_id: str, after: int = -1) -> bytes:
    """A turn's SSE bytes from `after` on, keep-alive comments left out."""
    params = {"after": after} if after >= 0 else {}
    r = requests.get(f"{url}/api/chat/turns/{turn_id}/events", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return strip_pings(r.content)


def strip_pings(raw: bytes) -> bytes:
    return b"".join(block + b"\n\n" for block in raw.split(b"\n\n") if block and block != b": ping")


def test_a_turn_started_on_a_resumes_byte_identically_through_b(cluster):
    a, b, _, _ = cluster
    turn_id = uuid.uuid4().hex
    stream = ask(a.url, "long 400", turn_id=turn_id)
    events = iter(stream)
    first = [next(events) for _ in range(30)]  # under way on A
    from_b = {}
    reader = threading.Thread(target=lambda: from_b.setdefault("raw", raw_events(b.url, turn_id, after=20)))
    reader.start()  # B follows the running turn from seq 20
    rest = list(events)
    reader.join(60)
    assert rest[-1].type == "done" and len(first) + len(rest) == 402  # start, 400 tokens, done
    whole_on_a = raw_events(a.url, turn_id)
    assert raw_events(b.url, turn_id) == whole_on_a  # the finished log, read on either worker
    after_20 = whole_on_a[whole_on_a.index(b"id: 21\n"):]
    assert from_b["raw"] == after_20  # and the live one, followed on B from the middle
    session = requests.get(f"{b.url}/api/chat/sessions/{first[0].json()['session_id']}", timeout=10).json()
    assert session["messages"][-1]["content"] == "".join(e.json()["token"] for e in first + rest if e.type == "token")


def test_a_cancel_sent_to_b_stops_the_turn_running_on_a(cluster):
    a, b, _, _ = cluster
    turn_id = uuid.uuid4().hex
    events = iter(ask(a.url, "long 20000", turn_id=turn_id))
    start = next(events).json()
    for _ in range(9):
        next(events)
    page = requests.get(f"{b.url}/api/threads/{start['thread_id']}/path", timeout=10).json()
    assert page["running"] == [{"turn_id": turn_id, "question_id": start["question_id"], "reply_id": start["reply_id"]}]
    cancel = requests.post(f"{b.url}/api/chat/turns/{turn_id}/cancel", timeout=10)
    assert cancel.status_code == 202 and cancel.json()["cancelled"] is True
    started = time.monotonic()
    last = list(events)[-1]
    assert last.type == "done" and last.json()["finish_reason"] == "cancelled"
    assert last.json()["tokens"] < 20000 and time.monotonic() - started < 5
    again = requests.post(f"{b.url}/api/chat/turns/{turn_id}/cancel", timeout=10).json()
    assert again == {"turn_id": turn_id, "cancelled": False, "status": "cancelled"}


def test_a_tool_call_waiting_on_a_is_approved_through_b(cluster):
    a, b, _, _ = cluster
    stream = ask(a.url, 'ask_add {"a": 2, "b": 3}', model="scripted/call", mcp_servers=["ask"])
    events = iter(stream)
    turn_id = next(events).json()["turn_id"]
    asked = next(e for e in events if e.type == "tool_approval_request").json()
    approved = requests.post(f"{b.url}/api/chat/turns/{turn_id}/approve", timeout=10,
                             json={"tool_call_id": asked["id"], "approved": True})
    assert approved.status_code == 202, approved.text
    rest = list(events)
    stream.close()
    assert [e.json()["content"] for e in rest if e.type == "tool_result"] == ["5"] and rest[-1].type == "done"


def test_a_response_made_on_a_is_read_resumed_and_continued_on_b(cluster):
    a, b, _, _ = cluster
    on_a = openai.OpenAI(base_url=f"{a.url}/v1", api_key="x", max_retries=0)
    on_b = openai.OpenAI(base_url=f"{b.url}/v1", api_key="x", max_retries=0)
    first = on_a.responses.create(model="scripted/history", input="My name is Ada.")
    assert on_b.responses.retrieve(first.id).output_text == first.output_text
    events = list(on_a.responses.create(model="scripted/long", input="long 30", stream=True))
    again = list(on_b.responses.retrieve(events[0].response.id, stream=True, starting_after=20))
    assert [e.sequence_number for e in again] == list(range(21, len(events)))
    assert [e.model_dump() for e in again] == [e.model_dump() for e in events[21:]]
    second = on_b.responses.create(model="scripted/history", input="And my name?", previous_response_id=first.id)
    assert second.output_text.startswith("user: My name is Ada. | assistant: user: My name is Ada. | ")


def test_a_session_written_on_a_is_read_and_continued_on_b(cluster):
    a, b, _, _ = cluster
    first = requests.post(f"{a.url}/api/chat", json={"message": "one two", "model": "scripted/echo"}, timeout=30)
    session_id = first.json()["session_id"]
    second = requests.post(f"{b.url}/api/chat", json={"message": "three", "model": "scripted/echo",
                                                       "session_id": session_id}, timeout=30)
    assert second.status_code == 200, second.text
    listed = [s["id"] for s in requests.get(f"{a.url}/api/chat/sessions", timeout=10).json()["sessions"]]
    assert session_id in listed
    messages = requests.get(f"{a.url}/api/chat/sessions/{session_id}", timeout=10).json()["messages"]
    assert [m["content"] for m in messages] == ["one two", "one two ", "three", "three "]


def test_a_thread_changed_on_one_worker_is_announced_to_connections_on_the_other(cluster):
    a, b, _, _ = cluster
    since = requests.get(f"{b.url}/api/threads", timeout=10).json()["revision"]
    feed = iter(SSEStream(f"{b.url}/api/threads/changes?since={since}", None, timeout=30))
    announced = threading.Event()
    client = socketio.Client(reconnection=False)
    client.on("threads_changed", lambda data: announced.set())
    client.connect(b.url, transports=["websocket"], wait_timeout=10)
    try:
        r = requests.post(f"{a.url}/api/chat", json={"message": "news", "model": "scripted/echo"}, timeout=30)
        assert r.status_code == 200
        assert announced.wait(2)  # the bound for another device to hear of a change
        revision = next(e for e in feed if e.type == "changed").json()["revision"]
        assert revision > since and r.json()["thread_id"] in [
            t["id"] for t in requests.get(f"{b.url}/api/threads?since={since}", timeout=10).json()["threads"]]
    finally:
        hang_up(client)


def test_the_running_turn_cap_holds_across_workers(cluster):
    a, b, _, _ = cluster
    running = [ask(x.url, "long 20000") for x in (a, b, a)]  # anonymous: one user, with a cap of 3
    try:
        assert [s.response.status for s in running] == [200, 200, 200]
        fourth = requests.post(f"{b.url}/api/chat/stream", json={"message": "x", "model": "scripted/echo"}, timeout=10)
        assert fourth.status_code == 429 and fourth.json()["error"]["type"] == "too_many_turns"
    finally:
        for stream in running:
            requests.post(f"{b.url}/api/chat/turns/{stream.headers['X-Turn-Id']}/cancel", timeout=10)
            list(stream)
            stream.close()
    assert requests.post(f"{b.url}/api/chat", json={"message": "x", "model": "scripted/echo"}, timeout=10).ok


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_socketio_through_nginx_follows_turns_running_on_either_worker(cluster, transport):
    a, b, front, _ = cluster
    turns = {}
    for server in (a, b):  # nginx sends the Socket.IO client to one of them: the other turn is remote
        turn_id = uuid.uuid4().hex
        stream = ask(server.url, "long 300", turn_id=turn_id)
        next(iter(stream))
        turns[turn_id] = stream
    client = ChatClient(front, transports=[transport])
    try:
        for turn_id in turns:
            assert client.sio.call("chat_resume", {"turn_id": turn_id, "after_seq": -1}, timeout=10)["turn_id"] == turn_id
        for turn_id, stream in turns.items():
            got = client.wait_end(turn_id, timeout=60)
            assert got[-1][1] == "chat_complete"
            assert [e[2]["seq"] for e in got] == list(range(len(got)))
            text = "".join(e[2]["token"] for e in got if e[1] == "chat_token")
            expected = [e for e in stream if e.type == "token"]
            stream.close()
            assert len(got) == 302 and text.endswith("".join(e.json()["token"] for e in expected))
    finally:
        client.close()


def test_sse_through_nginx_is_not_buffered(cluster):
    _, _, front, _ = cluster
    events = list(ask(front, "x", model="scripted/slow"))  # two pieces, 1.5 s apart
    tokens = [e.arrived for e in events if e.type == "token"]
    assert events[-1].type == "done" and len(tokens) == 2
    assert tokens[1] - tokens[0] > 1.0  # each piece arrived when it was written, not at the end


def test_the_rate_limit_is_shared(cluster, tmp_path):
    redis_server = cluster[3]
    url = f"{redis_server.url}/1"  # a database of its own: fresh counters
    c, d = (worker(tmp_path, url, RILL_RATE_LIMIT="3 per minute") for _ in range(2))
    try:
        statuses = [requests.post(f"{s.url}/api/chat", json={"message": "hi", "model": "scripted/echo"},
                                  timeout=30).status_code for s in (c, d, c, d)]
        assert statuses == [200, 200, 200, 429]
    finally:
        stop_server(c)
        stop_server(d)


def test_a_killed_workers_turn_ends_interrupted_for_the_readers_on_another(cluster, tmp_path):
    redis_server = cluster[3]
    url = f"{redis_server.url}/2"
    doomed, survivor = worker(tmp_path, url), worker(tmp_path, url)
    try:
        turn_id = uuid.uuid4().hex
        events = iter(ask(doomed.url, "long 20000", turn_id=turn_id))
        session_id = next(events).json()["session_id"]
        for _ in range(20):
            next(events)
        follower = iter(SSEStream(f"{survivor.url}/api/chat/turns/{turn_id}/events", None, timeout=60))
        next(follower)
        os.kill(doomed.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        last = list(follower)[-1]
        assert last.type == "error" and last.json()["error"]["type"] == "interrupted"
        assert time.monotonic() - killed < 30
        saved = requests.get(f"{survivor.url}/api/chat/sessions/{session_id}", timeout=10).json()["messages"]
        assert saved[-1]["status"] == "interrupted" and len(saved[-1]["content"]) > 0
        assert requests.post(f"{survivor.url}/api/chat/turns/{turn_id}/cancel", timeout=10).json()["status"] == \
            "interrupted"
    finally:
        stop_server(doomed)
        stop_server(survivor)


def test_a_reader_on_a_killed_worker_does_not_keep_a_turn_running(cluster, tmp_path):
    redis_server = cluster[3]
    url = f"{redis_server.url}/3"
    owner, reader = worker(tmp_path, url, RILL_ORPHAN_SECONDS="1"), worker(tmp_path, url)
    try:
        first = SSEStream(f"{owner.url}/api/chat/stream", {"message": "wait", "model": "scripted/hold"})
        start = next(iter(first)).json()
        follower = iter(SSEStream(f"{reader.url}/api/chat/turns/{start['turn_id']}/events", None, timeout=60))
        next(follower)
        first.close()  # the only reader left is on `reader`
        time.sleep(3)
        assert owner.health()["active_turns"] == 1  # a live reader keeps it
        os.kill(reader.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30  # the reader's heartbeat expires, then the orphan rule applies
        while owner.health()["active_turns"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert owner.health()["active_turns"] == 0
        saved = requests.get(f"{owner.url}/api/chat/sessions/{start['session_id']}", timeout=10).json()["messages"]
        assert saved[-1]["status"] == "cancelled"
    finally:
        stop_server(owner)
        stop_server(reader)


def test_redis_stopping_and_coming_back_hangs_nobody(cluster):
    a, b, _, redis_server = cluster
    turn_id = uuid.uuid4().hex
    stream = ask(a.url, "long 20000", turn_id=turn_id)
    events = iter(stream)
    for _ in range(10):
        next(events)
    follower = SSEStream(f"{b.url}/api/chat/turns/{turn_id}/events", None, timeout=60)
    redis_server.stop()
    stopped = time.monotonic()
    for reader in (events, iter(follower)):  # both end, with an error that names the store
        last = list(reader)[-1]
        assert last.type == "error" and last.json()["error"]["type"] == "store_unavailable", last.data
    assert time.monotonic() - stopped < 30
    refused = requests.post(f"{a.url}/api/chat", json={"message": "hi", "model": "scripted/echo"}, timeout=30)
    assert refused.status_code == 503 and "Redis" in refused.json()["error"]["message"]
    not_ready = requests.get(f"{a.url}/readyz", timeout=30)
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["usage"].startswith("unreachable")
    assert not_ready.json()["checks"]["threads"] == "ok"  # in PostgreSQL
    assert requests.get(f"{a.url}/livez", timeout=10).status_code == 200
    redis_server.start()
    for server in (a, b):  # back without a restart
        deadline = time.monotonic() + 20
        while True:
            r = requests.post(f"{server.url}/api/chat", json={"message": "back", "model": "scripted/echo"}, timeout=30)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.status_code == 200, r.text


def test_a_file_uploaded_through_one_worker_is_served_by_either(cluster):
    a, b, front, _ = cluster
    data = b"Rhine, 1,230 km; Danube, 2,850 km.\n" * 100
    stored = requests.post(f"{front}/api/files", files={"file": ("rivers.csv", data)}, timeout=30)
    assert stored.status_code == 201, stored.text
    for server in (a, b):
        got = requests.get(f"{server.url}/api/files/{stored.json()['id']}", timeout=30)
        assert got.status_code == 200 and got.content == data


def test_nginx_refuses_an_upload_over_the_limit_in_rills_words(cluster):
    _, _, front, _ = cluster
    r = requests.post(f"{front}/api/files", files={"file": ("big.bin", b"\0" * 25_000_000)}, timeout=60)
    assert r.status_code == 413
    assert r.json()["error"] == {"type": "request_too_large",
                                 "message": "the file is larger than RILL_MAX_UPLOAD_BYTES (20,000,000 bytes)"}
