"""The HTTP server Rill runs on: eventlet's WSGI server (Werkzeug's in threading mode), made
strict and hard to starve.

Both servers build on http.server's request handler, so one mixin adds what they lack:
- a deadline for the request head: a connection that has not sent a whole request line and
  headers within `http_idle_seconds` (of opening, or of its last response) is closed, so idle
  keep-alive and slow-header floods do not pile up. A body or a long reply is not under it;
  reads and writes that make no progress for `http_io_timeout_seconds` are.
- a connection cap that answers 503 at once when full, instead of leaving clients waiting;
- strict parsing (RFC 9112): one Host, one Content-Length made of digits, only `chunked` as a
  transfer coding, token header names, no control characters, no HTTP/0.9; every refusal is a
  400 with a status line and the API's JSON error body.
"""
from __future__ import annotations

import json
import logging
import os
import re
import resource
import signal
import socket
import threading
import time
from email.errors import FirstHeaderLineIsContinuationDefect, MissingHeaderBodySeparatorDefect

from .errors import error_body

log = logging.getLogger(__name__)

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB is allowed in field values
DIGITS = re.compile(r"[0-9]+")
MAX_REQUEST_LINE = 8192  # eventlet's own limit; Werkzeug's (http.server's) is 64 KiB
RESERVED_DESCRIPTORS = 64  # for the model, logs, Redis and the listening socket
# The header parser's defects that mean a malformed head. It reports others that are not: a
# multipart Content-Type always gets boundary defects, since the head is parsed without its body.
MALFORMED_HEAD = (MissingHeaderBodySeparatorDefect, FirstHeaderLineIsContinuationDefect)


def raise_descriptor_limit() -> int:
    """Lift the soft limit on open files to the hard one; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(wanted: int) -> int:
    return max(1, min(wanted, raise_descriptor_limit() - RESERVED_DESCRIPTORS))


def raw_response(status: int, reason: str, type: str, message: str, extra: str = "") -> bytes:
    body = json.dumps(error_body(type, message)).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n")
    return head.encode("latin-1") + body


BUSY = raw_response(503, "Service Unavailable", "server_busy",
                    "the server has too many open connections; retry shortly", "Retry-After: 1\r\n")


def refuse_busy(sock) -> None:
    """Answer 503 to a connection over the cap, reading what it sent first so that closing
    does not reset the connection before the client reads the answer."""
    try:
        sock.settimeout(0.2)
        try:
            sock.recv(65536)
        except OSError:
            pass
        sock.sendall(BUSY)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def head_problem(handler) -> str | None:
    """Why a parsed request head is not acceptable, or None."""
    if not TOKEN.fullmatch(handler.command):
        return f"invalid method {handler.command!r}"
    if any(ord(c) < 0x21 or ord(c) == 0x7f for c in handler.path):
        return "the request target contains control characters"
    headers = handler.headers
    if any(isinstance(defect, MALFORMED_HEAD) for defect in headers.defects):
        return "malformed header section (a line without a colon, or folded lines)"
    for name, value in headers.raw_items():
        if not TOKEN.fullmatch(name):
            return f"invalid header name {name!r}"
        if CONTROL.search(value):
            return f"header {name} contains control characters"
    hosts = headers.get_all("Host") or []
    if handler.request_version == "HTTP/1.1" and len(hosts) != 1:
        return "an HTTP/1.1 request needs exactly one Host header"
    lengths = [v.strip() for v in headers.get_all("Content-Length") or []]
    if any(not DIGITS.fullmatch(v) for v in lengths):
        return "Content-Length must be a number of bytes"
    if len({int(v) for v in lengths}) > 1:
        return "conflicting Content-Length headers"
    codings = headers.get_all("Transfer-Encoding") or []
    if codings:
        if lengths:
            return "Content-Length and Transfer-Encoding are not allowed together"
        if [c.strip().lower() for c in codings] != ["chunked"]:
            return "only `Transfer-Encoding: chunked` is supported"
    return None


class Deadlines:
    """Closes connections that have not delivered a request head in time. One reaper shuts
    such sockets down, which wakes their handler (green or OS thread) with end-of-file."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.due: dict[object, float] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._reap, name="rill-head-deadlines", daemon=True).start()

    def watch(self, sock) -> None:
        with self.lock:
            self.due[sock] = time.monotonic() + self.seconds

    def unwatch(self, sock) -> bool:
        """False when the deadline had already passed (and the socket was shut down)."""
        with self.lock:
            return self.due.pop(sock, None) is not None

    def _reap(self) -> None:
        while True:
            time.sleep(min(0.5, self.seconds / 4))
            now = time.monotonic()
            with self.lock:
                late = [sock for sock, due in self.due.items() if due <= now]
                for sock in late:
                    del self.due[sock]
            for sock in late:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class StrictRequest:
    """Mixin for an http.server request handler (eventlet's or Werkzeug's)."""

    deadlines: Deadlines  # set on the class serve() builds

    def handle_one_request(self):
        self.deadlines.watch(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.deadlines.unwatch(self.connection)

    def parse_request(self) -> bool:
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.send_error(414, f"the request line is longer than {MAX_REQUEST_LINE} bytes")
            return False
        if len(self.raw_requestline.split()) != 3:  # http.server would wait for HTTP/0.9 headers
            self.send_error(400, "malformed request line: expected `METHOD target HTTP/1.1`")
            return False
        if not super().parse_request():
            return False
        if not self.deadlines.unwatch(self.connection):  # too late: what arrived is not a whole head
            self.close_connection = True
            return False
        # The head is in: the body and the reply are not under the deadline.
        problem = head_problem(self)
        if problem:
            self.send_error(400, problem)
            return False
        return True

    def send_error(self, code, message=None, explain=None) -> None:
        """http.server's errors as the API's JSON, always with a status line (even for HTTP/0.9)."""
        reason = self.responses.get(code, ("Error",))[0]
        type = "request_too_large" if code in (413, 414, 431) else "invalid_request_error"
        self.close_connection = True
        try:
            self.wfile.write(raw_response(code, reason, type, message or reason))
            self.wfile.flush()
        except OSError:
            pass

    def finish(self) -> None:
        """http.server leaves rfile open when the client has gone (closing wfile raises first),
        and then the socket stays open until the garbage collector finds it."""
        try:
            self.wfile.flush()
        except OSError:
            pass
        for stream in (self.wfile, self.rfile):
            try:
                stream.close()
            except OSError:
                pass
        super().finish()

    def log_request(self, code="-", size="-") -> None:
        pass  # one line per request is the app's job, not the server's


def serve_eventlet(app, settings, cap: int) -> None:
    import eventlet
    import eventlet.wsgi

    class SheddingPool(eventlet.GreenPool):
        """A full pool answers 503 at once rather than leaving the connection in the backlog."""

        def spawn(self, function, connection, *args):
            if self.free() == 0:
                return eventlet.spawn(refuse_busy, connection[1])
            return super().spawn(function, connection, *args)

    class RillHttpProtocol(StrictRequest, eventlet.wsgi.HttpProtocol):
        deadlines = Deadlines(settings.http_idle_seconds)

        def get_environ(self):
            """eventlet decodes a chunked body but does not say so: Werkzeug would read it as empty."""
            environ = super().get_environ()
            if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
                environ["wsgi.input_terminated"] = True
            return environ

    listener = eventlet.listen((settings.host, settings.port), backlog=1024)
    eventlet.wsgi.server(
        listener, app, protocol=RillHttpProtocol, custom_pool=SheddingPool(cap),
        # eventlet's server holds output back until 4096 bytes; SSE needs every write sent.
        # (The per-request environ switch does not work: Flask-SocketIO copies the environ.)
        minimum_chunk_size=0,
        keepalive=True, socket_timeout=settings.http_io_timeout_seconds,
        log_output=False, debug=False)  # debug=True would send tracebacks to clients


def serve_threading(app, settings, cap: int) -> None:
    from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

    class RillRequestHandler(StrictRequest, WSGIRequestHandler):
        deadlines = Deadlines(settings.http_idle_seconds)
        timeout = settings.http_io_timeout_seconds
        # Buffered, flushed by Werkzeug after each write: one send per SSE event (unbuffered, its
        # chunked encoding sends the size, CRLF, data and CRLF apart).
        wbufsize = 1 << 16

        def handle_expect_100(self) -> bool:
            """The interim response goes out now (buffered, it would wait for the reply, and the
            client a second for it), and once: Werkzeug would write it again, unflushed."""
            self.send_response_only(100)
            self.end_headers()
            self.wfile.flush()
            del self.headers["Expect"]
            return True

    class Server(ThreadedWSGIServer):
        request_queue_size = 1024
        open_connections = 0
        counter_lock = threading.Lock()

        def process_request(self, request, client_address):
            with self.counter_lock:
                full = self.open_connections >= cap
                if not full:
                    self.open_connections += 1
            if full:
                refuse_busy(request)
                self.shutdown_request(request)
                return
            super().process_request(request, client_address)

        def process_request_thread(self, request, client_address):
            try:
                super().process_request_thread(request, client_address)
            finally:
                with self.counter_lock:
                    self.open_connections -= 1

    Server(settings.host, settings.port, app, handler=RillRequestHandler).serve_forever()


def stop_gracefully(rill) -> None:
    """SIGTERM or SIGINT: running turns end `interrupted` and are saved, the store is closed,
    then the process exits (nothing is half-written: each save is one transaction)."""
    log.warning("shutting down: saving running turns as interrupted")
    rill.turns.interrupt_all(rill.settings.shutdown_grace_seconds)
    rill.mcp.close()  # stdio servers' processes end with the server
    rill.threads.close()
    logging.shutdown()
    os._exit(0)


def on_stop_signals(rill) -> None:
    from .runtime import spawn

    def handler(signum, frame):
        spawn(stop_gracefully, rill)  # not in the handler: it waits, and must not block the loop

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def serve(app) -> None:
    """Serve `app` until the process ends, in the async mode its settings name."""
    settings = app.extensions["rill"].settings
    on_stop_signals(app.extensions["rill"])
    cap = connection_cap(settings.http_max_connections)
    log.info("serving on %s:%s (%s, at most %d connections)", settings.host, settings.port, settings.async_mode, cap)
    if settings.async_mode == "eventlet":
        serve_eventlet(app, settings, cap)
    else:
        serve_threading(app, settings, cap)
