"""Socket.IO chat_stream on the real server (both async modes), driven by python-socketio."""
import threading
import time

import pytest
import requests
import socketio

pytestmark = pytest.mark.slow


class ChatClient:
    """A python-socketio client that records every chat event with its arrival time (and, apart,
    the revisions `threads_changed` announces)."""

    def __init__(self, url: str, transports=("websocket",)):
        self.url = url
        self.events: list[tuple[float, str, dict]] = []
        self.revisions: list[int] = []
        self.changed = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self._record)
        self.sio.connect(url, transports=list(transports), wait_timeout=10)

    def _record(self, name, data):
        with self.changed:
            if name == "threads_changed":
                self.revisions.append(data["revision"])
            else:
                self.events.append((time.perf_counter(), name, data))
            self.changed.notify_all()

    def ask(self, **payload) -> dict:
        return self.sio.call("chat_stream", payload, timeout=30)

    def turn(self, turn_id: str) -> list[tuple[float, str, dict]]:
        return [e for e in self.events if e[2].get("turn_id") == turn_id]

    def wait_for(self, predicate, timeout: float = 120):
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.events), timeout), self.events[-5:]

    def wait_end(self, turn_id: str, timeout: float = 120) -> list[tuple[float, str, dict]]:
        """The turn's events once its final one and every one before it (down to the first this
        client got) are in, in seq order: python-socketio runs each event's handler in a thread of
        its own, so the final one may be recorded before the last token."""
        def whole(evs) -> bool:
            seqs = sorted(e[2]["seq"] for e in evs if e[2].get("turn_id") == turn_id and "seq" in e[2])
            ended = any(e[1] in ("chat_complete", "chat_error") and e[2].get("turn_id") == turn_id for e in evs)
            return ended and seqs == list(range(seqs[0], seqs[-1] + 1))

        self.wait_for(whole, timeout)
        return sorted(self.turn(turn_id), key=lambda e: e[2].get("seq", -1))

    def tokens(self, turn_id: str, n: int):
        self.wait_for(lambda evs: sum(1 for e in evs if e[1] == "chat_token" and e[2]["turn_id"] == turn_id) >= n)

    def close(self):
        hang_up(self.sio)


def hang_up(sio: socketio.Client) -> None:
    """Disconnect without waiting: websocket-client's close() waits up to 3 s for the server's
    close frame, which the client's own read loop has often taken already (against the threading
    server, every disconnect took 3 s)."""
    if sio.eio.ws is not None:
        sio.eio.ws.close(timeout=0)
    sio.disconnect()


@pytest.fixture
def client(server):
    c = ChatClient(server.url)
    yield c
    c.close()


def saved_reply(server, session_id: str) -> dict:
    return requests.get(f"{server.url}/api/chat/sessions/{session_id}", timeout=10).json()["messages"][-1]


def test_tokens_arrive_incrementally(server, client):
    ack = client.ask(message="Write a poem about the sea.", temperature=0, max_tokens=48)
    events = client.wait_end(ack["turn_id"])
    names = [e[1] for e in events]
    assert names[0] == "chat_start" and names[-1] == "chat_complete" and set(names[1:-1]) == {"chat_token"}
    assert events[0][2]["session_id"] == ack["session_id"]
    tokens = [e for e in events if e[1] == "chat_token"]
    assert [t[2]["count"] for t in tokens] == list(range(1, len(tokens) + 1)) and len(tokens) >= 20
    arrivals = [t[0] for t in tokens]
    assert len({round(a, 4) for a in arrivals}) >= len(tokens) // 2  # not one burst at the end
    assert arrivals[-1] - arrivals[0] > 0.1
    done = events[-1][2]
    assert done["finish_reason"] in ("stop", "length") and done["tokens"] >= len(tokens)
    assert set(done) >= {"ttft_ms", "duration_ms", "tokens_per_second", "usage"}
    reply = saved_reply(server, ack["session_id"])
    assert reply["content"] == "".join(t[2]["token"] for t in tokens) and reply["status"] == "complete"


def test_two_clients_receive_only_their_own_tokens(server):
    a, b = ChatClient(server.url), ChatClient(server.url)
    try:
        ack_a = a.ask(message="Name three colors.", temperature=0, max_tokens=24)
        ack_b = b.ask(message="alpha beta gamma delta", model="scripted/echo")
        ends = [a.wait_end(ack_a["turn_id"]), b.wait_end(ack_b["turn_id"])]
    finally:
        a.close()
        b.close()
    assert {e[2].get("turn_id") for e in a.events} == {ack_a["turn_id"]}
    assert a.revisions and a.revisions == sorted(a.revisions)  # told of each saved message, in order
    assert {e[2].get("turn_id") for e in b.events} == {ack_b["turn_id"]}
    assert "".join(e[2]["token"] for e in ends[1] if e[1] == "chat_token") == "alpha beta gamma delta "
    text_a = "".join(e[2]["token"] for e in ends[0] if e[1] == "chat_token")
    assert text_a and saved_reply(server, ack_a["session_id"])["content"] == text_a


def test_cancel_stops_the_model_and_saves_the_partial_reply(server, client):
    ack = client.ask(message="Count to one thousand.", temperature=0, max_tokens=2000)
    client.tokens(ack["turn_id"], 3)
    assert client.sio.call("chat_cancel", {"turn_id": ack["turn_id"]}, timeout=10)["cancelled"] is True
    events = client.wait_end(ack["turn_id"], timeout=30)
    done = events[-1]
    assert done[1] == "chat_complete" and done[2]["finish_reason"] == "cancelled"
    assert done[2]["tokens"] < 2000
    health = server.wait_idle()
    assert not any(e["busy"] for e in health["engine"].values())
    reply = saved_reply(server, ack["session_id"])
    assert reply["status"] == "cancelled"
    assert reply["content"] == "".join(e[2]["token"] for e in events if e[1] == "chat_token")


def test_disconnect_only_detaches_and_another_connection_resumes(server):
    c = ChatClient(server.url)
    ack = c.ask(message="Write a story about a river.", temperature=0, max_tokens=40)
    c.tokens(ack["turn_id"], 3)
    seen = [e[2] for e in c.turn(ack["turn_id"])]
    c.close()
    after = ChatClient(server.url)
    try:
        last = seen[-1]["seq"]
        resumed = after.sio.call("chat_resume", {"turn_id": ack["turn_id"], "after_seq": last}, timeout=10)
        assert resumed == {"turn_id": ack["turn_id"], "session_id": ack["session_id"], "thread_id": ack["session_id"]}
        events = [e[2] for e in after.wait_end(ack["turn_id"], timeout=60)]
        assert [e["seq"] for e in events] == list(range(last + 1, events[-1]["seq"] + 1))
        text = "".join(e["token"] for e in seen + events if "token" in e)
        assert events[-1]["finish_reason"] == "length"
        reply = saved_reply(server, ack["session_id"])
        assert reply["content"] == text and reply["status"] == "complete"
    finally:
        after.close()


def test_one_connection_may_follow_two_turns(server, client):
    first = client.ask(message="slow", model="scripted/slow")
    second = client.ask(message="one two", model="scripted/echo")
    assert "turn_id" in second, second
    assert client.wait_end(second["turn_id"])[-1][1] == "chat_complete"
    assert client.wait_end(first["turn_id"])[-1][1] == "chat_complete"
    for turn_id in (first["turn_id"], second["turn_id"]):
        assert [e[2]["seq"] for e in client.turn(turn_id)] == list(range(len(client.turn(turn_id))))


def test_cancel_from_another_connection_of_the_same_user(server, client):
    ack = client.ask(message="Count to one thousand.", temperature=0, max_tokens=2000)
    client.tokens(ack["turn_id"], 2)
    other = ChatClient(server.url)
    try:
        assert other.sio.call("chat_cancel", {"turn_id": ack["turn_id"]}, timeout=10)["cancelled"] is True
    finally:
        other.close()
    events = client.wait_end(ack["turn_id"], timeout=30)
    assert events[-1][1] == "chat_complete" and events[-1][2]["finish_reason"] == "cancelled"


@pytest.mark.parametrize("payload,kind", [
    ({"turn_id": "nope", "after_seq": 0}, "turn_not_found"),
    ({"turn_id": 5}, "turn_not_found"),
    ({"turn_id": "x", "after_seq": "3"}, "invalid_request_error"),
    ({"turn_id": "x", "after_seq": -2}, "invalid_request_error"),
])
def test_bad_resume_gets_chat_error(server, client, payload, kind):
    ack = client.sio.call("chat_resume", payload, timeout=10)
    assert ack["error"]["type"] == kind
    client.wait_for(lambda evs: any(e[1] == "chat_error" and e[2]["error"]["type"] == kind for e in evs), timeout=10)


def test_failure_mid_stream_is_a_chat_error(server, client):
    ack = client.ask(message="x", model="scripted/fail")
    events = client.wait_end(ack["turn_id"])
    assert [e[1] for e in events] == ["chat_start"] + ["chat_token"] * 3 + ["chat_error"]
    assert events[-1][2]["error"]["type"] == "model_error"


BAD_PAYLOADS = [
    ("a string", "hello", "payload must be an object"),
    ("a list", ["hello"], "payload must be an object"),
    ("nothing", None, "payload must be an object"),
    ("two arguments", ("a", "b"), "got 2 argument(s)"),
    ("an object and more", ({"message": "hi"}, 1), "got 2 argument(s)"),
    ("missing message", {}, "message: Field required"),
    ("empty message", {"message": ""}, "must not be empty"),
    ("message a number", {"message": 5}, "message"),
    ("temperature a string", {"message": "hi", "temperature": "hot"}, "temperature"),
    ("max_tokens negative", {"message": "hi", "max_tokens": -1}, "max_tokens"),
    ("unknown session", {"message": "hi", "session_id": "nope"}, "no session 'nope'"),
    ("unknown model", {"message": "hi", "model": "nope/nope"}, "unknown model"),
    ("oversize message", {"message": "x" * 16001}, "limit is 16000"),
]


@pytest.mark.parametrize("case", BAD_PAYLOADS, ids=[c[0] for c in BAD_PAYLOADS])
def test_bad_payload_gets_chat_error_and_the_connection_stays_up(server, client, case):
    _, payload, words = case
    ack = client.sio.call("chat_stream", payload, timeout=10) if payload is not None else \
        client.sio.call("chat_stream", timeout=10)
    assert words in ack["error"]["message"]
    client.wait_for(lambda evs: any(e[1] == "chat_error" for e in evs), timeout=10)
    error = next(e[2] for e in client.events if e[1] == "chat_error")
    assert error["error"] == ack["error"] and error["turn_id"] is None
    assert client.sio.connected
    ack = client.ask(message="one two", model="scripted/echo")
    assert client.wait_end(ack["turn_id"], timeout=30)[-1][1] == "chat_complete"


def test_cancel_of_an_unknown_turn_is_a_chat_error(server, client):
    ack = client.sio.call("chat_cancel", {"turn_id": "nope"}, timeout=10)
    assert ack["error"]["type"] == "turn_not_found"
    assert client.sio.connected


@pytest.mark.parametrize("event,args,kind", [
    ("chat_cancel", ("a", "b"), "invalid_request_error"),
    ("chat_cancel", (), "invalid_request_error"),
    ("no_such_event", ({"x": 1},), "unknown_event"),
])
def test_malformed_frames_get_an_ack_a_chat_error_and_one_warning(server, client, event, args, kind):
    before = server.log.read_text()
    ack = client.sio.call(event, args if len(args) != 1 else args[0], timeout=10) if args else \
        client.sio.call(event, timeout=10)
    assert ack["error"]["type"] == kind
    client.wait_for(lambda evs: any(e[1] == "chat_error" and e[2]["error"]["type"] == kind for e in evs), timeout=10)
    time.sleep(0.2)
    new = server.log.read_text()[len(before):]
    assert new.count("WARNING") == 1 and "Traceback" not in new, new
    assert client.sio.connected


def test_a_new_turn_may_start_as_soon_as_chat_complete_arrives(server, client):
    for _ in range(3):
        ack = client.ask(message="one two", model="scripted/echo")
        assert "turn_id" in ack, ack  # never refused as turn_in_progress
        client.wait_end(ack["turn_id"], timeout=30)
