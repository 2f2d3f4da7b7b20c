"""The abuse suite (bench/abuse.py), smaller, against the real server; and the HTTP server's
protections one by one (rill/server.py), in both async modes where the server differs."""
import json
import socket
import time

import psutil
import pytest
import requests
import socketio

from bench import abuse
from tests.server import start_server, stop_server
from tests.test_files import pdf
from tests.sse import SSEStream

pytestmark = pytest.mark.slow

IDLE = 1.0  # the abused server's request-head deadline, seconds


@pytest.fixture(scope="module")
def abused(tmp_path_factory):
    """Auth on, a short head deadline."""
    srv = abuse.start(tmp_path_factory.mktemp("abuse"), RILL_HTTP_IDLE_SECONDS=IDLE)
    yield srv
    stop_server(srv)


def new_log(server, before: str) -> str:
    time.sleep(0.3)
    return server.log.read_text()[len(before):]


def test_fuzzed_requests_with_and_without_a_token_get_no_5xx(abused):
    for authorized, seed in ((True, 11), (False, 12)):
        row = abuse.fuzz(abused.url, 150, authorized=authorized, seed=seed, label="ci")
        assert row.ok and row.count == 150, (row.notes, row.server_errors, row.hangs)


def test_fuzzed_requests_with_auth_off_get_no_5xx(server):
    row = abuse.fuzz(server.url, 100, authorized=False, seed=13, label="ci")
    assert row.ok, (row.notes, row.server_errors, row.hangs)


def test_broken_http_is_refused_with_a_status_line(server):
    row = abuse.broken_http(server.url)
    assert row.ok and row.notes == [f"all {len(abuse.BROKEN)} refused with a status line"], row.notes


@pytest.mark.parametrize("name,words", [
    ("conflicting Content-Length", "conflicting Content-Length"),
    ("HTTP/0.9", "malformed request line"),
    ("header line without colon", "malformed header section"),
    ("NUL in a header", "control characters"),
    ("no Host", "exactly one Host"),
])
def test_refusals_are_json_that_says_why(server, name, words):
    response = abuse.raw_exchange(server.url, abuse.BROKEN[name][0])
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in head
    assert words in json.loads(body)["error"]["message"]


def test_multipart_uploads_pass_the_server(server):

    """A form upload's head is well formed: the app takes it, not the server refusing it."""
    response = requests.post(f"{server.url}/api/files", files={"file": ("notes.txt", b"river notes\n")}, timeout=10)
    assert response.status_code == 201, response.text
    assert requests.get(f"{server.url}/api/files/{response.json()['id']}", timeout=10).content == b"river notes\n"
    document = requests.post(f"{server.url}/api/files", files={"file": ("r.pdf", pdf(["Rhine", "Rhone"]))}, timeout=30)
    assert document.status_code == 201 and document.json()["type"] == "application/pdf", document.text  # read off the hub


def test_an_upload_over_the_limit_is_refused_before_its_body_is_sent(server):
    """A 25 MB upload gets its 413 as soon as its head arrives: the client need not send 25 MB."""
    head = (b"POST /api/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 25000000\r\n\r\n")
    response = abuse.raw_exchange(server.url, head)
    assert abuse.status_of(response) == 413, response[:300]
    assert b"RILL_MAX_UPLOAD_BYTES (20,000,000 bytes)" in response


def test_chunked_request_bodies_are_read(server):
    body = json.dumps({"message": "sent in chunks", "model": "scripted/echo"}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    response = abuse.raw_exchange(server.url, b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                              b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    assert abuse.status_of(response) == 200, response[:300]
    assert json.loads(response.partition(b"\r\n\r\n")[2])["reply"] == "sent in chunks "


def test_a_client_that_expects_100_continue_gets_it_before_it_sends_the_body(server):
    """As curl does for a body over 1 KiB: without the interim response it waits a second first."""
    body = json.dumps({"message": "after the interim response", "model": "scripted/echo"}).encode()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        conn.settimeout(0.9)
        assert conn.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n")
        conn.settimeout(10)
        conn.sendall(body)
        response = b""
        while b"after the interim response" not in response:
            response += conn.recv(65536) or b"(closed)"
            assert not response.endswith(b"(closed)"), response
    assert b"HTTP/1.1 200 " in response


def test_405_carries_allow(server):
    r = requests.put(f"{server.url}/api/chat/stream", timeout=10)
    assert r.status_code == 405 and "POST" in r.headers["Allow"]


@pytest.mark.parametrize("slow", [False, True], ids=["idle keep-alive", "slow headers"])
def test_floods_do_not_lock_anyone_out(abused, slow):
    baseline = abuse.resources(abused)["fds"]
    row = abuse.flood(abused, 300, slow=slow, idle_seconds=IDLE)
    assert row.ok, row.notes
    assert abuse.settle(abused, baseline) <= baseline + 8


def test_a_full_server_answers_503_at_once(tmp_path):
    srv = start_server("eventlet", tmp_path, entry="tests.serve", RILL_HTTP_MAX_CONNECTIONS=20,
                       RILL_HTTP_IDLE_SECONDS=15)
    port = int(srv.url.rsplit(":", 1)[1])
    try:
        # The readiness check's connection holds a slot until the server sees it closed; a held
        # connection refused meanwhile stays established for a moment and would be counted.
        wait_for_connections(srv, port, 0)
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        try:
            wait_for_connections(srv, port, 20)  # on a busy machine the server takes a moment to accept
            started = time.perf_counter()
            response = abuse.raw_exchange(srv.url, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
            assert time.perf_counter() - started < 2
            head, _, body = response.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in head, head
            assert json.loads(body)["error"]["type"] == "server_busy"
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.5)
        assert requests.get(f"{srv.url}/health", timeout=10).status_code == 200
    finally:
        stop_server(srv)  # also when an assertion fails: no server left running


def wait_for_connections(server, port: int, count: int) -> None:
    """Until the server process holds exactly `count` connections to `port`, all established."""
    deadline = time.monotonic() + 10
    while (states := connection_states(server, port)) != [psutil.CONN_ESTABLISHED] * count:
        assert time.monotonic() < deadline, f"the server holds {states}, not {count} established"
        time.sleep(0.1)


def connection_states(server, port: int) -> list[str]:
    return [c.status for c in psutil.Process(server.process.pid).net_connections("tcp")
            if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN]


def test_long_streams_outlive_the_head_deadline(abused):
    headers = {"Authorization": f"Bearer {abuse.token('long-reader')}"}
    stream = SSEStream(f"{abused.url}/api/chat/stream", {"message": "hi", "model": "scripted/slow"}, headers=headers)
    events = list(stream)
    stream.close()
    assert events[-1].type == "done" and events[-1].arrived - events[0].arrived > 2 * IDLE
    client = socketio.Client(reconnection=False)
    client.connect(abused.url, transports=["websocket"], auth={"token": abuse.token("idle-socket")}, wait_timeout=10)
    time.sleep(3 * IDLE)  # an idle websocket is not a request head being read
    assert client.connected
    assert "turn_id" in client.call("chat_stream", {"message": "still here", "model": "scripted/echo"}, timeout=10)
    client.disconnect()


def test_malformed_socketio_frames_each_get_chat_error_and_one_warning(abused):
    before = abused.log.read_text()
    count = 2 * len(abuse.MALFORMED_FRAMES)
    row = abuse.malformed_socketio(abused.url, count)
    assert row.ok and row.count == count, row.notes
    log = new_log(abused, before)
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]
    assert log.count(" WARNING ") == count, log[-2000:]


def test_an_oversize_sub_is_refused_on_socketio_too(abused):
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(abused.url, transports=["websocket"], auth={"token": abuse.token("x" * 10000)}, wait_timeout=10)
    r = requests.get(f"{abused.url}/api/chat/sessions", timeout=10,
                     headers={"Authorization": f"Bearer {abuse.token('x' * 1000)}"})
    assert r.status_code == 401 and "'sub'" in r.json()["error"]["message"]


def test_aborted_streams_close_their_sockets_at_once(abused):
    row = abuse.aborted_streams(abused, 40)
    assert row.ok, row.notes


def test_a_soak_keeps_every_session_in_order(abused):
    row = abuse.soak(abused.url, 12, 4)
    assert row.ok and row.count == 48, row.notes
