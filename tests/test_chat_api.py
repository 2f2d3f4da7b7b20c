"""The real server (both async modes) with the real model, driven over loopback."""
import threading

import pytest
import requests

from tests.sse import SSEStream

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0, "max_tokens": 24}


def stream(server, **body):
    s = SSEStream(f"{server.url}/api/chat/stream", body)
    try:
        return s, list(s)
    finally:
        s.close()


def test_stream_wire_format_and_headers(server):
    s, events = stream(server, message="Say hello.", **GREEDY)
    assert s.response.status == 200
    assert s.headers["Content-Type"].startswith("text/event-stream")
    assert s.headers["Cache-Control"] == "no-cache" and s.headers["X-Accel-Buffering"] == "no"
    kinds = [e.type for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and set(kinds[1:-1]) == {"token"}
    assert [e.id for e in events] == [str(i) for i in range(len(events))]
    start, done = events[0].json(), events[-1].json()
    assert start["session_id"] == s.headers["X-Session-Id"] and start["model"] == "local/smollm2-135m-instruct"
    tokens = [e.json() for e in events[1:-1]]
    assert [t["count"] for t in tokens] == list(range(1, len(tokens) + 1))
    assert done["done"] is True and done["finish_reason"] in ("stop", "length")
    assert done["tokens"] == done["usage"]["completion_tokens"] >= len(tokens) > 1
    assert done["usage"]["prompt_tokens"] > 5
    assert 0 < done["ttft_ms"] <= done["duration_ms"] and done["tokens_per_second"] > 0


def test_tokens_arrive_spread_in_time(server):
    _, events = stream(server, message="Write a poem about the sea.", temperature=0, max_tokens=48)
    tokens = [e for e in events if e.type == "token"]
    assert len(tokens) >= 20
    spread = tokens[-1].arrived - tokens[0].arrived
    arrivals = sorted({round(e.arrived, 4) for e in tokens})
    # Buffered output would land in one or two reads; a live stream lands in many.
    assert len(arrivals) >= len(tokens) // 2, arrivals
    assert spread > 0.1
    assert events[-1].arrived >= tokens[-1].arrived


def test_greedy_stream_equals_non_stream(server):
    body = {"message": "List two fruits.", **GREEDY}
    _, events = stream(server, **body)
    streamed = "".join(e.json()["token"] for e in events if e.type == "token")
    response = requests.post(f"{server.url}/api/chat", json=body, timeout=60)
    assert response.status_code == 200
    reply = response.json()
    assert reply["reply"] == streamed and streamed
    assert reply["session_id"] == response.headers["X-Session-Id"]
    assert reply["tokens"] == events[-1].json()["tokens"]
    assert set(reply) >= {"turn_id", "model", "finish_reason", "ttft_ms", "duration_ms", "tokens_per_second", "usage"}


def test_session_history_is_used_and_recorded(server):
    _, events = stream(server, message="My name is Zorblat.", **GREEDY)
    sid = events[0].json()["session_id"]
    first_prompt = events[-1].json()["usage"]["prompt_tokens"]
    _, events = stream(server, message="What is my name?", session_id=sid, **GREEDY)
    assert events[0].json()["session_id"] == sid
    assert events[-1].json()["usage"]["prompt_tokens"] > first_prompt + 5  # history went in
    session = requests.get(f"{server.url}/api/chat/sessions/{sid}", timeout=10).json()
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"] * 2
    assert session["messages"][2]["content"] == "What is my name?"
    reply = session["messages"][3]
    assert reply["status"] == "complete" and reply["tokens"] == events[-1].json()["tokens"]
    assert reply["content"] == "".join(e.json()["token"] for e in events if e.type == "token")
    assert sid in [s["id"] for s in requests.get(f"{server.url}/api/chat/sessions", timeout=10).json()["sessions"]]
    assert requests.delete(f"{server.url}/api/chat/sessions/{sid}", timeout=10).status_code == 204
    assert requests.get(f"{server.url}/api/chat/sessions/{sid}", timeout=10).status_code == 404
    created = requests.post(f"{server.url}/api/chat/sessions", timeout=10)
    assert created.status_code == 201 and created.json()["message_count"] == 0


def test_disconnect_only_detaches_the_turn_runs_on_and_is_saved(server):
    s = SSEStream(f"{server.url}/api/chat/stream",
                  {"message": "Write a story about a river.", "temperature": 0, "max_tokens": 40})
    seen = []
    for event in s:
        seen.append(event)
        if len([e for e in seen if e.type == "token"]) == 5:
            break
    s.close()
    start = seen[0].json()
    health = server.wait_idle(timeout=60)
    assert health["active_turns"] == 0
    reply = requests.get(f"{server.url}/api/chat/sessions/{start['session_id']}", timeout=10).json()["messages"][-1]
    assert reply["status"] == "complete" and reply["tokens"] == 40
    assert reply["content"].startswith("".join(e.json()["token"] for e in seen if e.type == "token"))
    replay = SSEStream(f"{server.url}/api/chat/turns/{start['turn_id']}/events", None)
    events = list(replay)
    replay.close()
    assert "".join(e.json()["token"] for e in events if e.type == "token") == reply["content"]


def test_cancel_endpoint_stops_a_running_turn(server):
    s = SSEStream(f"{server.url}/api/chat/stream",
                  {"message": "Count to one thousand.", "temperature": 0, "max_tokens": 2000})
    events = iter(s)
    start = next(events).json()
    next(events)
    r = requests.post(f"{server.url}/api/chat/turns/{start['turn_id']}/cancel", timeout=10)
    assert r.status_code == 202
    rest = list(events)
    s.close()
    assert rest[-1].type == "done" and rest[-1].json()["finish_reason"] == "cancelled"
    assert rest[-1].json()["tokens"] < 2000
    again = requests.post(f"{server.url}/api/chat/turns/{start['turn_id']}/cancel", timeout=10)
    assert again.status_code == 200 and again.json() == {"turn_id": start["turn_id"], "cancelled": False,
                                                         "status": "cancelled"}
    missing = requests.post(f"{server.url}/api/chat/turns/no-such-turn/cancel", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "turn_not_found"


def test_concurrent_requests_all_complete_in_turn(server):
    results = {}

    def ask(i):
        _, events = stream(server, message=f"Say the number {i}.", temperature=0, max_tokens=12)
        results[i] = events

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [0, 1, 2, 3]
    assert all(events[-1].type == "done" and events[-1].json()["tokens"] > 0 for events in results.values())


def test_failure_mid_stream_ends_with_error_and_server_keeps_serving(server):
    _, events = stream(server, message="x", model="scripted/fail")
    assert [e.type for e in events] == ["start", "token", "token", "token", "error"]
    error = events[-1].json()["error"]
    assert error["type"] == "model_error" and "scripted failure" in error["message"]
    r = requests.post(f"{server.url}/api/chat", json={"message": "x", "model": "scripted/fail"}, timeout=30)
    assert r.status_code == 502 and r.json()["error"]["type"] == "model_error"
    _, events = stream(server, message="Hi", **GREEDY)
    assert events[-1].type == "done"


def test_keepalive_comments_while_waiting_for_tokens(server):
    s, events = stream(server, message="x", model="scripted/slow")
    assert [e.type for e in events] == ["start", "token", "token", "done"]
    assert s.decoder.comments.count(" ping") >= 2


def test_scripted_echo_pieces_arrive_exactly(server):
    _, events = stream(server, message="one two  three", model="scripted/echo")
    assert [e.json()["token"] for e in events if e.type == "token"] == ["one ", "two ", "three "]



def test_health_and_models(server):
    health = server.health()
    assert health["status"] == "ok" and health["model"]["state"] == "ready"
    assert health["async_mode"] == server.mode and health["uptime_s"] >= 0 and health["version"]
    models = requests.get(f"{server.url}/api/models", timeout=10).json()
    assert models["default"] == "local/smollm2-135m-instruct"
    ids = [m["id"] for p in models["providers"] for m in p["models"]]
    assert "local/smollm2-135m-instruct" in ids


def test_the_reply_is_saved_before_done_goes_out(server):
    s = SSEStream(f"{server.url}/api/chat/stream", {"message": "Hi", "temperature": 0, "max_tokens": 6})
    events = []
    for event in s:
        events.append(event)
        if event.type == "done":
            break  # the body is not finished yet: the stream is still open
    session = requests.get(f"{server.url}/api/chat/sessions/{events[0].json()['session_id']}", timeout=10).json()
    s.close()
    assert session["messages"][-1]["status"] == "complete"
    assert session["messages"][-1]["content"] == "".join(e.json()["token"] for e in events if e.type == "token")


def test_replace_turn_asks_again_without_the_old_answer(server):
    ask = lambda **body: requests.post(f"{server.url}/api/chat", json={"model": "scripted/echo", **body},  # noqa: E731
                                       timeout=30).json()
    first = ask(message="one")
    sid = first["session_id"]
    second = ask(message="two", session_id=sid)
    third = ask(message="deux", session_id=sid, replace_turn=second["turn_id"])
    messages = requests.get(f"{server.url}/api/chat/sessions/{sid}", timeout=10).json()["messages"]
    assert [m["content"] for m in messages] == ["one", "one ", "deux", "deux "]
    assert messages[-1]["turn_id"] == third["turn_id"]
    again = ask(message="trois", session_id=sid, replace_turn=second["turn_id"])  # the old one stays a branch
    assert again["reply"] == "trois "
    messages = requests.get(f"{server.url}/api/chat/sessions/{sid}", timeout=10).json()["messages"]
    assert [m["content"] for m in messages] == ["one", "one ", "trois", "trois "]
    tree = requests.get(f"{server.url}/api/threads/{sid}", timeout=10).json()["messages"]
    assert sorted(m["parts"][0]["text"] for m in tree if m["parent_id"] == first["reply_id"]) == ["deux", "trois", "two"]
