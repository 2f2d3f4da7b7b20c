"""Tools that run in a turn: the scripted model calls a tool of a real MCP server (tests/mcp_tools.py,
stdio and Streamable HTTP), Rill runs it, the result is a `tool_result` event in the turn's log and a
part of the saved reply, and the model answers from it. Over SSE and Socket.IO, resumed, stopped,
timed out, failing, with its server killed between turns, and refused when it cannot be offered."""
import threading
import time

import psutil
import pytest
import requests
import socketio

from tests.mcp_tools import STDIO, config_file, http_server
from tests.server import free_port, start_server, stop_server
from tests.sse import SSEStream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mcp_config(tmp_path_factory):
    process, url = http_server(free_port())
    yield config_file(tmp_path_factory.mktemp("mcp") / "mcp.json", t=STDIO, quick={**STDIO, "timeout_seconds": 2},
                      web={"url": url}, ask={**STDIO, "ask_first": True})
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module", params=["eventlet", "threading"])
def server(request, mcp_config, tmp_path_factory):
    srv = start_server(request.param, tmp_path_factory.mktemp(f"mcp-{request.param}"), RILL_MCP_CONFIG=mcp_config,
                       RILL_MAX_CONCURRENT_TURNS=32, RILL_TOOL_APPROVAL_SECONDS=5)
    yield srv
    stop_server(srv)


def ask(server, message, servers=("t",), **extra):
    body = {"message": message, "model": "scripted/call", "mcp_servers": list(servers), **extra}
    stream = SSEStream(f"{server.url}/api/chat/stream", body)
    events = list(stream)
    stream.close()
    return events


def kinds(events):
    return [e.type for e in events]


def text(events):
    return "".join(e.json()["token"] for e in events if e.type == "token")


@pytest.mark.parametrize("name", ["t", "web"])
def test_a_call_runs_its_result_is_an_event_and_the_model_answers_from_it(server, name):
    events = ask(server, f'{name}_add {{"a": 2, "b": 3}}', servers=(name,))
    assert kinds(events)[:2] == ["start", "tool_call_start"] and kinds(events)[-1] == "done"
    results = [e.json() for e in events if e.type == "tool_result"]
    assert results == [{"index": 0, "id": f"call_{name}_add", "content": "5", "is_error": False}]
    assert kinds(events).index("tool_result") > kinds(events).index("tool_call_end")
    assert text(events) == "The result is 5."
    done = events[-1].json()
    assert done["finish_reason"] == "stop" and done["usage"]["completion_tokens"] == 2 + 3  # both rounds
    thread_id = events[0].json()["thread_id"]
    reply = requests.get(f"{server.url}/api/threads/{thread_id}", timeout=10).json()["messages"][-1]
    assert reply["parts"] == [
        {"type": "tool_call", "id": f"call_{name}_add", "name": f"{name}_add", "arguments": '{"a": 2, "b": 3}'},
        {"type": "tool_result", "tool_call_id": f"call_{name}_add", "content": "5"},
        {"type": "text", "text": "The result is 5."}]
    history = requests.post(f"{server.url}/api/chat", timeout=30, json={
        "message": "and then?", "model": "scripted/history", "thread_id": thread_id}).json()["reply"]
    assert history == (f'user: {name}_add {{"a": 2, "b": 3}} | assistant:  | tool: 5 | '
                       'assistant: The result is 5. | user: and then? | ')  # the rounds, in order


def over_socketio(server, message, servers, listen):
    """A turn over Socket.IO, to its end; listen(client) adds the handlers a test watches with."""
    client = socketio.Client(reconnection=False)
    ended, failed = threading.Event(), []
    listen(client)
    client.on("chat_complete", lambda data: ended.set())
    client.on("chat_error", lambda data: (failed.append(data), ended.set()))
    client.connect(server.url, transports=["websocket"], wait_timeout=10)
    try:
        client.emit("chat_stream", {"message": message, "model": "scripted/call", "mcp_servers": list(servers)})
        assert ended.wait(30)
    finally:
        client.disconnect()
    assert failed == []


def test_socketio_carries_the_result_once(server):
    got = []
    over_socketio(server, 't_add {"a": 2, "b": 3}', ["t"], lambda client: client.on("chat_tool_result", got.append))
    assert [(g["content"], g["is_error"]) for g in got] == [("5", False)]


def test_a_reader_that_comes_back_gets_the_call_and_its_result_once(server):
    events = ask(server, 't_slow {"seconds": 1}')
    turn_id = events[0].json()["turn_id"]
    at = next(int(e.id) for e in events if e.type == "tool_call_end")
    again = SSEStream(f"{server.url}/api/chat/turns/{turn_id}/events", None, headers={"Last-Event-ID": str(at - 1)})
    replay = list(again)
    again.close()
    assert kinds(replay).count("tool_call_end") == 1 and kinds(replay).count("tool_result") == 1
    assert [e.id for e in replay] == [e.id for e in events if int(e.id) >= at]


def test_a_slow_tool_times_out_and_the_turn_goes_on(server):
    started = time.monotonic()
    events = ask(server, 'quick_slow {"seconds": 60}', servers=("quick",))
    result = next(e.json() for e in events if e.type == "tool_result")
    assert result["is_error"] and result["content"] == "quick_slow did not answer within 2 s"
    assert events[-1].type == "done" and time.monotonic() - started < 3.5
    assert text(events) == "The result is quick_slow did not answer within 2 s."


def test_a_failing_tool_is_an_error_result_the_model_reads(server):
    events = ask(server, "t_boom {}")
    result = next(e.json() for e in events if e.type == "tool_result")
    assert result["is_error"] and "boom" in result["content"] and events[-1].type == "done"


def test_stop_during_a_call_ends_the_turn_at_once_and_its_stdio_server_starts_again(server):
    pid = int(text(ask(server, "quick_pid {}", servers=("quick",))).removeprefix("The result is ").rstrip("."))
    stream = SSEStream(f"{server.url}/api/chat/stream", {"message": 'quick_slow {"seconds": 60}',
                                                         "model": "scripted/call", "mcp_servers": ["quick"]})
    events = iter(stream)
    first = next(events)
    for event in events:
        if event.type == "tool_call_end":
            break
    time.sleep(0.3)  # the call is running
    stopped_at = time.monotonic()
    requests.post(f"{server.url}/api/chat/turns/{first.json()['turn_id']}/cancel", timeout=10)
    rest = list(events)
    stream.close()
    assert rest[-1].type == "done" and rest[-1].json()["finish_reason"] == "cancelled"
    assert time.monotonic() - stopped_at < 1
    assert "tool_result" not in kinds(rest)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the stopped call's server process is still there"
        time.sleep(0.1)
    assert text(ask(server, 'quick_add {"a": 2, "b": 3}', servers=("quick",))) == "The result is 5."


def test_a_server_killed_between_turns_starts_again_with_the_next_call(server):
    pid = int(text(ask(server, "t_pid {}")).removeprefix("The result is ").rstrip("."))
    psutil.Process(pid).kill()
    time.sleep(0.3)
    answers = [text(ask(server, 't_add {"a": 2, "b": 3}')) for _ in range(2)]
    assert answers[-1] == "The result is 5."  # the first may find the pipe closed (an error result)


@pytest.mark.parametrize("body,status,words", [
    ({"mcp_servers": ["nope"]}, 400, "mcp_servers.0: no MCP server 'nope' (configured: t, quick, web, ask)"),
    ({"mcp_servers": ["t"], "model": "local/smollm2-135m-instruct"}, 400, "cannot call tools"),
    ({"mcp_servers": ["t/add", "t/nope"]}, 400, "mcp_servers.1: MCP server 't' has no tool 'nope' (it has: add, "),
])
def test_servers_that_cannot_be_offered_are_refused_before_anything_runs(server, body, status, words):
    r = requests.post(f"{server.url}/api/chat/stream", timeout=30,
                      json={"message": 't_add {"a": 1, "b": 2}', "model": "scripted/call", **body})
    assert r.status_code == status and words in r.json()["error"]["message"], r.text


def test_the_servers_and_their_tools_are_listed(server):
    listed = {s["name"]: s for s in requests.get(f"{server.url}/api/mcp", timeout=30).json()["servers"]}
    assert set(listed) == {"t", "quick", "web", "ask"} and listed["ask"]["ask_first"] and not listed["t"]["ask_first"]
    assert listed["web"]["transport"] == "http" and listed["t"]["transport"] == "stdio"
    add = next(t for t in listed["t"]["tools"] if t["name"] == "t_add")
    assert add["id"] == "t/add" and add["description"] == "Add two integers." and add["parameters"]["required"] == ["a", "b"]


def test_twenty_turns_at_once_each_run_their_call_and_the_server_stays_responsive(server):
    """A stalled event loop (a tool waited for on the hub) would hold /livez for the tools' whole
    time; a busy 2-core machine adds tens of milliseconds (bench/mcp_bench.py measures it)."""
    answers, latencies, done = [], [], threading.Event()

    def probe():  # while the turns run, and at least 10 times (20 quick turns can end within 5 probes)
        while not done.is_set() or len(latencies) < 10:
            started = time.perf_counter()
            requests.get(f"{server.url}/livez", timeout=5).raise_for_status()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)

    timer = threading.Thread(target=probe)
    timer.start()
    threads = [threading.Thread(target=lambda: answers.append(text(ask(server, 't_add {"a": 2, "b": 3}'))))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    timer.join(10)
    assert answers == ["The result is 5."] * 20
    assert len(latencies) > 5 and max(latencies) < 0.5, f"/livez took up to {max(latencies) * 1000:.0f} ms"


def test_a_thread_remembers_its_servers_until_told_otherwise(server):
    first = ask(server, 't_add {"a": 2, "b": 3}')
    thread_id = first[0].json()["thread_id"]
    summary = requests.get(f"{server.url}/api/threads/{thread_id}", timeout=10).json()
    assert summary["mcp_servers"] == ["t"]
    again = SSEStream(f"{server.url}/api/chat/stream", {"message": 't_add {"a": 4, "b": 5}', "model": "scripted/call",
                                                        "thread_id": thread_id})  # no mcp_servers: the thread's
    assert text(list(again)) == "The result is 9."
    again.close()
    off = requests.patch(f"{server.url}/api/threads/{thread_id}", json={"mcp_servers": []}, timeout=10)
    assert off.status_code == 200 and off.json()["mcp_servers"] == []
    none = requests.post(f"{server.url}/api/chat", timeout=30, json={
        "message": 't_add {"a": 1, "b": 1}', "model": "scripted/call", "thread_id": thread_id}).json()
    assert none["reply"] == "no tool t_add to call"
    bad = requests.patch(f"{server.url}/api/threads/{thread_id}", json={"mcp_servers": ["nope"]}, timeout=10)
    assert bad.status_code == 400 and "mcp_servers.0: no MCP server 'nope'" in bad.json()["error"]["message"]


def test_one_tool_of_a_server_can_be_chosen_alone(server):
    events = ask(server, 't_add {"a": 2, "b": 3}', servers=("t/add",))
    assert text(events) == "The result is 5."
    thread_id = events[0].json()["thread_id"]
    other = requests.post(f"{server.url}/api/chat", timeout=30, json={
        "message": "t_pid {}", "model": "scripted/call", "thread_id": thread_id}).json()  # remembered: add alone
    assert other["reply"] == "no tool t_pid to call"
    assert requests.get(f"{server.url}/api/threads/{thread_id}", timeout=10).json()["mcp_servers"] == ["t/add"]


def read_until(events, kind):
    """The events read up to and including the first of this kind."""
    got = []
    for event in events:
        got.append(event)
        if event.type == kind:
            return got
    raise AssertionError(f"no {kind} event in {kinds(got)}")


def test_an_ask_first_call_waits_for_approval_which_a_reader_coming_back_can_give(server):
    stream = SSEStream(f"{server.url}/api/chat/stream", {"message": 'ask_add {"a": 2, "b": 3}',
                                                         "model": "scripted/call", "mcp_servers": ["ask"]})
    asked = read_until(iter(stream), "tool_approval_request")
    stream.close()  # a reload while the call waits
    turn_id, request = asked[0].json()["turn_id"], asked[-1].json()
    assert request == {"index": 0, "id": "call_ask_add"} and "tool_result" not in kinds(asked)
    time.sleep(0.5)
    again = SSEStream(f"{server.url}/api/chat/turns/{turn_id}/events", None)
    replay = iter(again)
    assert [e.id for e in read_until(replay, "tool_approval_request")] == [e.id for e in asked]  # still waiting
    approve = f"{server.url}/api/chat/turns/{turn_id}/approve"
    r = requests.post(approve, json={"tool_call_id": "call_ask_add", "approved": True}, timeout=10)
    assert r.status_code == 202 and r.json() == {"turn_id": turn_id, "tool_call_id": "call_ask_add", "approved": True}
    rest = list(replay)
    again.close()
    assert kinds(rest)[:2] == ["tool_approval", "tool_result"] and rest[0].json()["approved"] is True
    assert rest[1].json()["content"] == "5" and text(rest) == "The result is 5." and rest[-1].type == "done"
    late = requests.post(approve, json={"tool_call_id": "call_ask_add", "approved": False}, timeout=10)
    assert late.status_code == 409 and "waits for approval" in late.json()["error"]["message"]


def test_a_declined_call_over_socketio_is_an_error_result_the_model_reads(server):
    got = []

    def listen(client):
        client.on("chat_tool_approval_request", lambda data: client.emit(
            "chat_approve", {"turn_id": data["turn_id"], "tool_call_id": data["id"], "approved": False},
            callback=lambda answer: got.append(("answer", answer))))
        client.on("chat_tool_approval", lambda data: got.append(("approval", data["approved"])))
        client.on("chat_tool_result", lambda data: got.append(("result", data["content"], data["is_error"])))
        client.on("chat_token", lambda data: got.append(("token", data["token"])))

    over_socketio(server, 'ask_add {"a": 2, "b": 3}', ["ask"], listen)
    declined = "the user did not approve this call; it was not run"
    assert ("approval", False) in got and ("result", declined, True) in got
    answers = [g[1] for g in got if g[0] == "answer"]  # chat_approve's ack
    assert [(a["tool_call_id"], a["approved"]) for a in answers] == [("call_ask_add", False)]
    assert "".join(g[1] for g in got if g[0] == "token") == f"The result is {declined}."


def test_an_unanswered_call_is_declined_in_time_and_stop_ends_a_waiting_turn(server):
    events = ask(server, 'ask_add {"a": 2, "b": 3}', servers=("ask",))  # RILL_TOOL_APPROVAL_SECONDS=5
    assert [e.json()["approved"] for e in events if e.type == "tool_approval"] == [False]
    assert next(e.json() for e in events if e.type == "tool_result")["is_error"] and events[-1].type == "done"

    stream = SSEStream(f"{server.url}/api/chat/stream", {"message": 'ask_add {"a": 2, "b": 3}',
                                                         "model": "scripted/call", "mcp_servers": ["ask"]})
    events = iter(stream)
    turn_id = read_until(events, "tool_approval_request")[0].json()["turn_id"]
    stopped_at = time.monotonic()
    requests.post(f"{server.url}/api/chat/turns/{turn_id}/cancel", timeout=10)
    rest = list(events)
    stream.close()
    assert time.monotonic() - stopped_at < 1 and kinds(rest) == ["done"]
    assert rest[-1].json()["finish_reason"] == "cancelled"


@pytest.mark.parametrize("turn,body,status,words", [
    ("nope", {"tool_call_id": "x", "approved": True}, 404, "no turn 'nope'"),
    (None, {"tool_call_id": "x"}, 400, "approved"),
    (None, {"tool_call_id": "x", "approved": "yes"}, 400, "approved"),
    (None, {"tool_call_id": "x", "approved": True, "why": "ok"}, 400, "why"),
    (None, {"tool_call_id": "x", "approved": True}, 409, "no tool call 'x'"),
])
def test_an_approval_that_cannot_be_taken_says_why(server, turn, body, status, words):
    turn = turn or ask(server, 't_add {"a": 2, "b": 3}')[0].json()["turn_id"]
    r = requests.post(f"{server.url}/api/chat/turns/{turn}/approve", json=body, timeout=10)
    assert r.status_code == status and words in r.json()["error"]["message"], r.text
