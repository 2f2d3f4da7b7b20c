"""Replies that outlive their connection, on the real server with the real model: cut and resume
over SSE and Socket.IO, several readers, orphans, retention, /v1 cancel on close, a restart."""
import random
import signal
import socket
import threading
import time

import openai
import pytest
import requests
import socketio

from tests.server import start_server, stop_server
from tests.sse import SSEStream, decode_all
from tests.test_socketio import hang_up

pytestmark = pytest.mark.slow

PROMPTS = ["Name three rivers in Europe.", "Write one sentence about the sea.", "Count from one to ten."]
MAX_TOKENS = 10
RUNS = {"eventlet": 100, "threading": 10}  # the 100 once; the other async mode a smaller share


def greedy(message: str) -> dict:
    return {"message": message, "temperature": 0, "max_tokens": MAX_TOKENS}


def uncut(server, message: str) -> str:
    return requests.post(f"{server.url}/api/chat", json=greedy(message), timeout=120).json()["reply"]


@pytest.fixture(scope="module")
def baselines(server):
    return {p: uncut(server, p) for p in PROMPTS}


def check_events(seqs: list[int], kinds: list[str]) -> None:
    """Every seq once, in order, from 0 to the final event."""
    assert seqs == list(range(len(seqs))), seqs
    assert kinds[0] == "start" and kinds[-1] == "done" and set(kinds[1:-1]) <= {"token"}


def sse_cut_and_resume(server, message: str, cut: int, delay: float) -> tuple[str, list[int], list[str]]:
    """Read `cut` events, drop the connection, wait, follow the turn again from the last seq."""
    first = SSEStream(f"{server.url}/api/chat/stream", greedy(message))
    seen = []
    for event in first:
        seen.append(event)
        if len(seen) >= cut or event.type == "done":
            break
    first.close()
    time.sleep(delay)
    turn_id = seen[0].json()["turn_id"]
    if seen[-1].type != "done":
        after = {"Last-Event-ID": seen[-1].id} if random.random() < 0.5 else {}
        query = "" if after else f"?after={seen[-1].id}"
        second = SSEStream(f"{server.url}/api/chat/turns/{turn_id}/events{query}", None, headers=after)
        seen += list(second)
        second.close()
    text = "".join(e.json()["token"] for e in seen if e.type == "token")
    return text, [int(e.id) for e in seen], [e.type for e in seen]


def in_order(events: list) -> list:
    """The events by seq: python-socketio's client runs each message's handler in a thread of its
    own, so the order its handlers append in is not the order the server sent (a browser's is).
    Over Socket.IO this test so checks that nothing is lost or doubled across the cut, not the
    order (the server writes a connection's events from one place, in seq order)."""
    return sorted(events, key=lambda event: event[1]["seq"])


def arrived(events: list) -> list:
    """The events received without a gap from the first: what an in-order client had seen."""
    ordered = in_order(events)
    run = [event for n, event in enumerate(ordered) if event[1]["seq"] == ordered[0][1]["seq"] + n]
    return ordered[:len(run)] if ordered else []


def sio_cut_and_resume(server, message: str, cut: int, delay: float) -> tuple[str, list[int], list[str]]:
    def client(events: list, ended: threading.Event):
        sio = socketio.Client(reconnection=False)
        for name in ("chat_start", "chat_token", "chat_complete", "chat_error"):
            sio.on(name, lambda data, name=name: (events.append((name, data)),
                                                  name in ("chat_complete", "chat_error") and ended.set()))
        sio.connect(server.url, transports=["websocket"], wait_timeout=10)
        return sio

    def settled(events: list, last: int) -> list:
        """All of them in order, once every handler up to the one of seq `last` has run."""
        deadline = time.monotonic() + 10
        while (len(arrived(events)) < len(events) or arrived(events)[-1][1]["seq"] != last) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        return in_order(events)

    received, ended = [], threading.Event()
    first = client(received, ended)
    ack = first.call("chat_stream", greedy(message), timeout=30)
    deadline = time.monotonic() + 60
    while len(arrived(received)) < cut and not ended.is_set() and time.monotonic() < deadline:
        time.sleep(0.005)
    hang_up(first)
    got = arrived(received)
    events = got[:cut] if not any(name == "chat_complete" for name, _ in got) else got  # what arrived before the cut
    time.sleep(delay)
    if not any(name == "chat_complete" for name, _ in events):
        more, ended = [], threading.Event()
        second = client(more, ended)
        last = events[-1][1]["seq"] if events else -1
        assert second.call("chat_resume", {"turn_id": ack["turn_id"], "after_seq": last}, timeout=30)["turn_id"]
        assert ended.wait(60)
        done = next(data["seq"] for name, data in more if name in ("chat_complete", "chat_error"))
        hang_up(second)
        events += settled(more, done)
    names = {"chat_start": "start", "chat_token": "token", "chat_complete": "done", "chat_error": "error"}
    text = "".join(data["token"] for name, data in events if name == "chat_token")
    return text, [data["seq"] for _, data in events], [names[name] for name, _ in events]


@pytest.mark.parametrize("transport", ["sse", "socketio"])
def test_cut_and_resume_loses_and_doubles_nothing(server, baselines, transport):
    """One run at a time, so each turn is decoded alone like its baseline: batched greedy output
    can differ from unbatched in a near-tie, and that is not what this test is about."""
    run = sse_cut_and_resume if transport == "sse" else sio_cut_and_resume
    rng = random.Random(7)
    for i in range(RUNS[server.mode]):
        message, cut, delay = PROMPTS[i % len(PROMPTS)], rng.randint(1, MAX_TOKENS + 1), rng.uniform(0, 0.2)
        text, seqs, kinds = run(server, message, cut, delay)
        check_events(seqs, kinds)
        assert text == baselines[message], (message, cut, delay)


def test_two_readers_see_the_same_events(server):
    start = SSEStream(f"{server.url}/api/chat/stream", greedy(PROMPTS[0]))
    events = iter(start)
    turn_id = next(events).json()["turn_id"]
    other = SSEStream(f"{server.url}/api/chat/turns/{turn_id}/events", None)
    mine, theirs = [next(events)] + list(events), list(other)
    start.close()
    other.close()
    assert [(e.id, e.type, e.data) for e in theirs[1:]] == [(e.id, e.type, e.data) for e in mine]
    assert theirs[0].type == "start"


def chunks_of(url: str, path: str) -> list[bytes]:
    """A chunked response's chunks as the server wrote them (one write, one chunk)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        reader = connection.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += reader.readline()
        assert b"transfer-encoding: chunked" in head.lower(), head
        chunks = []
        while size := int(reader.readline().strip(), 16):
            chunks.append(reader.read(size))
            reader.readline()
        return chunks


def test_a_reader_that_starts_behind_gets_what_has_come_in_one_write(server):
    """A reload or a second tab after the reply ended: the kept events go out as one write, not
    one each, and are the events the live reader got, every one once."""
    live = list(SSEStream(f"{server.url}/api/chat/stream", greedy(PROMPTS[2])))
    chunks = chunks_of(server.url, f"/api/chat/turns/{live[0].json()['turn_id']}/events")
    assert len(chunks) == 1
    replayed = decode_all(chunks[0])
    assert [(e.id, e.type, e.data) for e in replayed] == [(e.id, e.type, e.data) for e in live]
    check_events([int(e.id) for e in replayed], [e.type for e in replayed])


def test_resume_refusals(server):
    r = requests.get(f"{server.url}/api/chat/turns/no-such-turn/events", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "turn_not_found"
    done = requests.post(f"{server.url}/api/chat", json={"message": "a b", "model": "scripted/echo"}, timeout=30).json()
    url = f"{server.url}/api/chat/turns/{done['turn_id']}/events"
    for bad in ("x", "-1", "1.5", "99999999999"):
        r = requests.get(url, headers={"Last-Event-ID": bad}, timeout=10)
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"]["message"], bad
    assert requests.get(url, params={"after": "two"}, timeout=10).status_code == 400
    assert requests.get(url, headers={"Last-Event-ID": "3"}, timeout=10).status_code == 204  # has it all


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory):
    """Orphans after 1 s, finished turns forgotten after 1 s."""
    srv = start_server("eventlet", tmp_path_factory.mktemp("short"), RILL_ORPHAN_SECONDS=1,
                       RILL_TURN_RETENTION_SECONDS=1)
    yield srv
    stop_server(srv)


def saved(server, session_id: str) -> dict:
    return requests.get(f"{server.url}/api/chat/sessions/{session_id}", timeout=10).json()["messages"][-1]


def test_a_turn_nobody_reads_is_cancelled_and_saved(short_lived):
    s = SSEStream(f"{short_lived.url}/api/chat/stream", {"message": "wait", "model": "scripted/hold"})
    start = next(iter(s)).json()
    s.close()
    time.sleep(3.5)
    assert short_lived.health()["active_turns"] == 0
    assert saved(short_lived, start["session_id"])["status"] == "cancelled"


def test_a_turn_with_a_reader_is_not_an_orphan(short_lived):
    s = SSEStream(f"{short_lived.url}/api/chat/stream", {"message": "wait", "model": "scripted/hold"})
    events = iter(s)
    start = next(events).json()
    time.sleep(2.5)
    assert short_lived.health()["active_turns"] == 1
    requests.post(f"{short_lived.url}/api/chat/turns/{start['turn_id']}/cancel", timeout=10)
    assert [e.type for e in events][-1] == "done"
    s.close()


def test_a_finished_turn_is_forgotten_after_the_retention(short_lived):
    done = requests.post(f"{short_lived.url}/api/chat", json={"message": "a", "model": "scripted/echo"},
                         timeout=30).json()
    url = f"{short_lived.url}/api/chat/turns/{done['turn_id']}/events"
    assert requests.get(url, timeout=10).status_code == 200
    time.sleep(3)
    assert requests.get(url, timeout=10).status_code == 404


def test_v1_clients_that_close_the_stream_cancel_the_turn(short_lived):
    client = openai.OpenAI(base_url=f"{short_lived.url}/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(model="scripted/slow", stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 5
    while short_lived.health()["active_turns"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert short_lived.health()["active_turns"] == 0  # well before the 3 s the reply would take


def test_sessions_survive_a_restart_and_sigterm_saves_running_turns(tmp_path):
    data = tmp_path / "data"
    first = start_server("eventlet", tmp_path, RILL_DATA_DIR=data)
    try:
        done = requests.post(f"{first.url}/api/chat", json={"message": "one two", "model": "scripted/echo"},
                             timeout=30).json()
        s = SSEStream(f"{first.url}/api/chat/stream", {"message": "wait", "model": "scripted/hold",
                                                       "session_id": done["session_id"]})
        events = iter(s)
        next(events)
        first.process.send_signal(signal.SIGTERM)
        rest = list(events)
        s.close()
        assert rest[-1].type == "error" and rest[-1].json()["error"]["type"] == "interrupted"
        assert first.process.wait(20) == 0
    finally:
        stop_server(first)
    second = start_server("threading", tmp_path, RILL_DATA_DIR=data)
    try:
        messages = requests.get(f"{second.url}/api/chat/sessions/{done['session_id']}", timeout=10).json()["messages"]
        assert [(m["role"], m.get("status")) for m in messages] == [
            ("user", "complete"), ("assistant", "complete"), ("user", "complete"), ("assistant", "interrupted")]
        assert messages[1]["content"] == "one two "
    finally:
        stop_server(second)
