"""The abuse suite: what an attacker on loopback tries, bounded in count and time, loopback only.

Against a real server (the scripted provider beside the real model, auth on):
- fuzzed HTTP requests built from /openapi.json (mutated bodies, odd paths, methods and
  headers), half without a token or with a bad one, half with a valid one;
- the broken-HTTP table: conflicting lengths, bad request and header lines, HTTP/0.9, ...;
- idle keep-alive and slow-header floods, with a fresh client timed during each;
- malformed Socket.IO frames on a raw websocket;
- aborted streams (the client leaves after the first bytes);
- a soak of concurrent clients, each checking its session's messages are in order.
It prints one row per part (requests, 5xx, hangs, notes) and the server's descriptors, threads
and RSS before and after. tests/test_abuse.py runs the same parts, smaller, in CI.

Usage: python bench/abuse.py [--scale 1.0] [--mode eventlet|threading]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import random
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import psutil
import requests
import websocket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.server import Server, start_server, stop_server  # noqa: E402

SECRET = "abuse-suite-secret-that-is-long-enough-for-hs256"
STREAM_SECONDS = 2.0  # how long the fuzzer reads an event stream before it hangs up
TIMEOUT = 30.0  # a request not answered in this long counts as a hang


@dataclass
class Row:
    part: str
    count: int = 0
    server_errors: int = 0  # 5xx, or an answer that is not HTTP at all
    hangs: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.server_errors == 0 and self.hangs == 0


def token(sub: str = "abuser", **claims) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 3600, **claims}, SECRET, algorithm="HS256")


def start(log_dir: Path, mode: str = "eventlet", **env) -> Server:
    """The server under abuse: auth on, tiny replies, a short request-head deadline."""
    settings = {"RILL_JWT_SECRET": SECRET, "RILL_MAX_TOKENS_CAP": 4, "RILL_DEFAULT_MAX_TOKENS": 2,
                "RILL_HTTP_IDLE_SECONDS": 2, "RILL_KEEPALIVE_SECONDS": 5, **env}
    return start_server(mode, log_dir, **settings)


def resources(server: Server) -> dict:
    process = psutil.Process(server.process.pid)
    return {"fds": process.num_fds(), "threads": process.num_threads(),
            "rss_mib": round(process.memory_info().rss / 2**20, 1)}


def settle(server: Server, baseline: int, slack: int = 8, timeout: float = 15.0, what: str = "num_fds") -> int:
    """Wait for the server's descriptors (or threads) to come back near `baseline`; returns the last count."""
    deadline = time.monotonic() + timeout
    while True:
        count = getattr(psutil.Process(server.process.pid), what)()
        if count <= baseline + slack or time.monotonic() > deadline:
            return count
        time.sleep(0.25)


# --- fuzzed requests ----------------------------------------------------------------------------

ODD_VALUES = [None, True, -1, 0, 2**63, -2**70, 1.5, 1e308, "", " ", "\u202e\u0000", "x" * 20000, [], {},
              [[[[[]]]]], {"$ne": 1}, "../../etc/passwd", "<script>alert(1)</script>", "🦀" * 100]
ODD_SEGMENTS = ["x", "..", "%2e%2e", "%00", "a" * 3000, "🦀", "%ZZ", "'; DROP TABLE s;--", " "]


def fuzz_request(rng: random.Random, doc: dict) -> tuple[str, str, dict, bytes]:
    """One mutated request: (method, path, headers, body)."""
    path, item = rng.choice(list(doc["paths"].items()))
    method = rng.choice(list(item) if rng.random() < 0.85 else ["put", "delete", "patch", "get"]).upper()
    path = "/".join(rng.choice(ODD_SEGMENTS) if part.startswith("{") else part for part in path.split("/"))
    headers = {"Content-Type": "application/json"}
    operation = item.get(method.lower(), {})
    ref = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else {}
    body: object = dict(rng.choice(schema.get("examples", [{}])))
    if "message" in schema.get("properties", {}) or "messages" in schema.get("properties", {}):
        body["model"] = rng.choice(["scripted/echo", "scripted/echo", "local/smollm2-135m-instruct", "local/nope", 5])
    for _ in range(rng.randint(0, 3)):
        key = rng.choice([*schema.get("properties", {"x": 0}), "unknown_field"])
        body[key] = rng.choice(ODD_VALUES)
    if rng.random() < 0.1:
        body.pop(rng.choice(list(body)), None) if body else None
    raw = json.dumps(body).encode()
    roll = rng.random()
    if roll < 0.05:
        raw = raw[: rng.randint(0, len(raw))]  # cut short
    elif roll < 0.08:
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    elif roll < 0.10:
        headers["Content-Type"] = rng.choice(["text/plain", "application/x-www-form-urlencoded", "", "json"])
    elif roll < 0.12:
        raw = json.dumps(rng.choice(ODD_VALUES)).encode()
    return method, path, headers, raw


def fuzz(url: str, count: int, authorized: bool, seed: int, label: str, workers: int = 8) -> Row:
    row = Row(f"fuzzed requests ({label})")
    doc = requests.get(f"{url}/openapi.json", timeout=10).json()
    rng = random.Random(seed)
    bad_tokens = ["", "garbage", token(sub=""), token(exp="9999999999"), token(sub="x" * 10000),
                  jwt.encode({"sub": "a", "exp": time.time() + 60}, "another-secret-long-enough-to-be-valid!")]
    jobs = []
    for _ in range(count):
        request = fuzz_request(rng, doc)
        credential = token(f"fuzz-{rng.randrange(4)}") if authorized else rng.choice(bad_tokens)
        jobs.append((*request, credential))
    statuses: dict[int, int] = {}

    def send(job) -> int | None:
        method, path, headers, raw, credential = job
        if credential:
            headers = {**headers, "Authorization": f"Bearer {credential}"}
        try:
            with requests.request(method, url + path, headers=headers, data=raw, timeout=TIMEOUT, stream=True) as r:
                # A stream that never ends by design (the threads' change feed) is read for a while only.
                endless = r.headers.get("Content-Type", "").startswith("text/event-stream")
                deadline = time.monotonic() + STREAM_SECONDS
                for _ in r.iter_content(65536):
                    if endless and time.monotonic() > deadline:
                        break
                return r.status_code
        except requests.Timeout:
            return None

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for status in pool.map(send, jobs):
            row.count += 1
            if status is None:
                row.hangs += 1
                continue
            statuses[status] = statuses.get(status, 0) + 1
            row.server_errors += status >= 500
    row.notes.append(" ".join(f"{s}:{n}" for s, n in sorted(statuses.items())))
    return row


# --- broken HTTP --------------------------------------------------------------------------------

JSON = b"Content-Type: application/json\r\n"
BROKEN = {  # name: (raw request, acceptable statuses)
    "conflicting Content-Length": (b"POST /api/chat HTTP/1.1\r\nHost: x\r\n" + JSON +
                                   b"Content-Length: 31\r\nContent-Length: 5\r\n\r\n{\"message\": \"hi\"}", {400}),
    "Content-Length not a number": (b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello", {400}),
    "Content-Length with a sign": (b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", {400}),
    "Content-Length and chunked": (b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    "unknown transfer coding": (b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", {400, 501}),
    "chunked twice": (b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    "garbage request line": (b"GARBAGE\r\n\r\n", {400}),
    "HTTP/0.9": (b"GET /\r\n", {400}),
    "four words": (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", {400}),
    "unknown version": (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", {400, 505}),
    "bad method": (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    "control character in target": (b"GET /he\x01alth HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    "header line without colon": (b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", {400}),
    "NUL in a header": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", {400}),
    "space before colon": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", {400}),
    "folded header": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", {400}),
    "no Host": (b"GET /health HTTP/1.1\r\n\r\n", {400}),
    "two Hosts": (b"GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", {400}),
    "header line of 70,000 bytes": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n",
                                    {400, 431}),
    "200 headers": (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(200)) +
                    b"\r\n", {400, 431}),
    "request line of 20,000 bytes": (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {400, 414}),
    "bad chunk size": (b"POST /api/chat HTTP/1.1\r\nHost: x\r\n" + JSON + b"Transfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n", {400}),
}


def raw_exchange(url: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes; the response's head and Content-Length body (socket.timeout if none comes)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may refuse before reading everything
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                head, _, body = out.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if _ and length and len(body) >= length[0]:
                    break
        except ConnectionError:
            pass
        return out


def status_of(response: bytes) -> int | None:
    head = response.split(b"\r\n", 1)[0].split()
    if len(head) >= 2 and head[0].startswith(b"HTTP/1.") and head[1].isdigit():
        return int(head[1])
    return None


def broken_http(url: str, credential: str = "") -> Row:
    """With auth on, pass a token: the server checks it before it reads a body."""
    row = Row("broken HTTP table")
    authorization = b"Authorization: Bearer %s\r\n" % credential.encode() if credential else b""
    for name, (data, expected) in BROKEN.items():
        row.count += 1
        try:
            status = status_of(raw_exchange(url, data.replace(b"Host: x\r\n", b"Host: x\r\n" + authorization, 1)))
        except socket.timeout:
            row.hangs += 1
            row.notes.append(f"{name}: no answer")
            continue
        if status not in expected:
            row.server_errors += status is None or status >= 500
            row.notes.append(f"{name}: {status}")
    if not row.notes:
        row.notes.append(f"all {row.count} refused with a status line")
    return row


# --- floods -------------------------------------------------------------------------------------

def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end has closed: what is left to read (the rest of a reply) ends in EOF."""
    sock.settimeout(0.05)
    try:
        while sock.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def flood(server: Server, count: int, slow: bool, idle_seconds: float) -> Row:
    """`count` connections that each send one request and stay (idle) or send half a head (slow)."""
    row = Row(f"{'slow-header' if slow else 'idle keep-alive'} flood")
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" if slow else b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    host, port = server.url.removeprefix("http://").split(":")
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(head)
            sockets.append(sock)
        if not slow:
            for sock in sockets:
                sock.recv(65536)
        row.count = len(sockets)
        started = time.perf_counter()
        try:
            requests.get(f"{server.url}/health", timeout=10).raise_for_status()
            row.notes.append(f"a fresh client answered in {1000 * (time.perf_counter() - started):.0f} ms")
        except requests.RequestException as exc:
            row.hangs += 1
            row.notes.append(f"a fresh client was not answered: {exc}")
        time.sleep(idle_seconds + 1.5)
        closed = sum(closed_by_peer(sock) for sock in sockets)
        row.hangs += count - closed
        row.notes.append(f"{closed} of {count} closed by the server")
    finally:
        for sock in sockets:
            sock.close()
    return row


# --- Socket.IO ----------------------------------------------------------------------------------

MALFORMED_FRAMES = ['42[', '42', '4', '42{"x":1}', '42[1,2]', '42[null]', '49', '4-',
                    '42["chat_stream","a","b"]', '421["chat_stream",1,2,3]', '422["chat_cancel"]',
                    '423["chat_cancel",[]]', '42["no_such_event",{}]', '424["chat_stream"]',
                    '45-["chat_stream",{"_placeholder":true,"num":0}]', '42["' + "x" * 5000 + '"]']


def socketio_connection(url: str, credential: str) -> websocket.WebSocket:
    ws = websocket.create_connection(url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
                                     timeout=10)
    ws.recv()  # Engine.IO open
    ws.send("40" + json.dumps({"token": credential}))
    reply = ws.recv()
    if not reply.startswith("40{"):
        raise RuntimeError(f"namespace connect refused: {reply}")
    return ws


def next_frame(ws: websocket.WebSocket, wanted) -> str | None:
    """The next frame for which wanted(frame) holds (acks and others skipped, pings answered)."""
    try:
        for _ in range(20):
            frame = ws.recv()
            if frame == "2":  # Engine.IO ping
                ws.send("3")
            elif wanted(frame):
                return frame
    except websocket.WebSocketTimeoutException:
        pass
    return None


def malformed_socketio(url: str, count: int) -> Row:
    """Every frame must get a chat_error back; the connection keeps working."""
    row = Row("malformed Socket.IO frames")
    ws = socketio_connection(url, token("sio-abuser"))
    try:
        for n in range(count):
            ws.send(MALFORMED_FRAMES[n % len(MALFORMED_FRAMES)])
            row.count += 1
            if next_frame(ws, lambda f: f.startswith('42["chat_error"')) is None:
                row.hangs += 1
        ws.send('425["chat_stream",{"message":"still there?","model":"scripted/echo"}]')
        if next_frame(ws, lambda f: f.startswith("435") and "turn_id" in f) is None:
            row.server_errors += 1
            row.notes.append("the connection no longer works")
        else:
            row.notes.append("each got chat_error; the connection still works")
    finally:
        ws.close()
    return row


# --- aborted streams and the soak ---------------------------------------------------------------

def aborted_streams(server: Server, count: int) -> Row:
    row = Row("aborted streams")
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"message": "leave early", "model": "scripted/slow"}).encode()
    baseline = psutil.Process(server.process.pid).num_fds()
    for n in range(count):  # a user each: one user's streams would meet the concurrency cap
        request = (b"POST /api/chat/stream HTTP/1.1\r\nHost: x\r\n" + JSON + b"Authorization: Bearer " +
                   token(f"aborter-{n}").encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request)
            first = sock.recv(4096)
            row.count += 1
            if status_of(first) != 200:
                row.server_errors += 1
    fds = settle(server, baseline)
    row.notes.append(f"descriptors {baseline} -> {fds} once the streams ended")
    if fds > baseline + 8:
        row.hangs += 1
    return row


def soak(url: str, clients: int, turns: int) -> Row:
    """Each client holds one session and checks its history is exactly what it sent, in order."""
    row = Row(f"soak ({clients} clients x {turns} turns)")

    def client(n: int) -> tuple[int, int, str]:
        headers = {"Authorization": f"Bearer {token(f'soak-{n}')}"}
        session_id, errors = None, 0
        sent = []
        for t in range(turns):
            message = f"client {n} turn {t}"
            body = {"message": message, "model": "scripted/echo", **({"session_id": session_id} if session_id else {})}
            r = requests.post(f"{url}/api/chat", json=body, headers=headers, timeout=TIMEOUT)
            errors += r.status_code >= 500
            if r.status_code == 200:
                session_id = r.json()["session_id"]
                sent.append(message)
        history = requests.get(f"{url}/api/chat/sessions/{session_id}", headers=headers, timeout=TIMEOUT).json()
        users = [m["content"] for m in history["messages"] if m["role"] == "user"]
        replies = [m["content"] for m in history["messages"] if m["role"] == "assistant"]
        in_order = users == sent and [r.split() for r in replies] == [m.split() for m in sent]  # echo model
        return errors, len(sent), "" if in_order else f"client {n}: {users} / {replies}"

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for errors, done, problem in pool.map(client, range(clients)):
            row.count += done
            row.server_errors += errors
            if problem:
                row.hangs += 1
                row.notes.append(problem[:200])
    if not row.notes:
        row.notes.append("every session in order")
    return row


# --- the whole suite ----------------------------------------------------------------------------

def run_suite(server: Server, open_server: Server, scale: float) -> list[Row]:
    n = lambda full: max(1, int(full * scale))  # noqa: E731
    return [
        fuzz(server.url, n(2500), authorized=True, seed=1, label="auth on, valid token"),
        fuzz(server.url, n(2500), authorized=False, seed=2, label="auth on, no or bad token"),
        fuzz(open_server.url, n(1000), authorized=False, seed=3, label="auth off"),
        broken_http(server.url, token()),
        flood(server, n(2000), slow=False, idle_seconds=2),
        flood(server, n(2000), slow=True, idle_seconds=2),
        malformed_socketio(server.url, n(500)),
        aborted_streams(server, n(200)),
        soak(server.url, 32, n(10)),
    ]


def table(rows: list[Row], before: dict, after: dict) -> str:
    lines = [f"{'part':<42} {'count':>7} {'5xx':>5} {'hangs':>6}  notes"]
    for row in rows:
        lines.append(f"{row.part:<42} {row.count:>7} {row.server_errors:>5} {row.hangs:>6}  {'; '.join(row.notes)}")
    lines.append("server before: " + ", ".join(f"{k} {v}" for k, v in before.items()))
    lines.append("server after:  " + ", ".join(f"{k} {v}" for k, v in after.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full counts")
    parser.add_argument("--mode", default="eventlet", choices=["eventlet", "threading"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        server = start(Path(logs), args.mode)
        open_server = start_server(args.mode, Path(logs), RILL_MAX_TOKENS_CAP=4, RILL_DEFAULT_MAX_TOKENS=2)
        try:
            before = resources(server)
            started = time.perf_counter()
            rows = run_suite(server, open_server, args.scale)
            settle(server, before["fds"])
            settle(server, before["threads"], what="num_threads")
            after = resources(server)
            print(table(rows, before, after))
            print(f"{sum(r.count for r in rows)} requests, connections and frames in "
                  f"{time.perf_counter() - started:.0f} s ({args.mode})")
        finally:
            stop_server(server)
            stop_server(open_server)
    sys.exit(0 if all(r.ok for r in rows) else 1)


if __name__ == "__main__":
    main()
