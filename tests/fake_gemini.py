"""A loopback stand-in for Gemini's REST streaming API, so the Gemini provider is tested over HTTP.

It speaks what google-genai sends: POST /v1beta/models/{model}:streamGenerateContent?alt=sse with
the key in `x-goog-api-key`, answered by chunked `text/event-stream` events
`data: {GenerateContentResponse}\\r\\n\\r\\n`, the last carrying finishReason and usageMetadata.
Failures use Gemini's error body {"error": {"code", "message", "status"}}.

The reply echoes the request so tests can see it was translated: `[<system instruction>] ` (when
there is one) and then the words of the last user turn, one piece each, DELAY seconds apart.
maxOutputTokens cuts it short with MAX_TOKENS; `usageMetadata` counts words. Models:
  gemini-fake, gemini-2.5-flash   the echo above
  gemini-long                     200 pieces (to cancel); records whether the client went away
  gemini-broken                   two pieces, then the connection is cut mid-body
  gemini-stall                    one piece, then STALL seconds of silence before the rest
  gemini-tools                    a thought, then a call to each declared tool (two in one chunk);
                                  after functionResponse parts, text quoting them
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

KEY = "fake-gemini-key"
DELAY = 0.03
STALL = 2.0
ECHO_MODELS = {"gemini-fake", "gemini-2.5-flash"}
MODELS = ECHO_MODELS | {"gemini-long", "gemini-broken", "gemini-stall", "gemini-tools"}
PREFIX, SUFFIX = "/v1beta/models/", ":streamGenerateContent"


def error_body(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}


def words(contents: list[dict]) -> int:
    return sum(len(p.get("text", "").split()) for c in contents for p in c.get("parts", []))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked bodies, so a cut stream is detectably incomplete
    disable_nagle_algorithm = True  # else each small event waits ~40 ms for the client's delayed ACK
    server: "FakeGemini"

    def log_message(self, *args):
        pass

    def do_POST(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = {"path": url.path, "query": parse_qs(url.query), "headers": dict(self.headers),
                  "body": json.loads(body or b"{}"), "client_left": None}
        self.server.requests.append(record)
        model = url.path.removeprefix(PREFIX).removesuffix(SUFFIX)
        key = self.headers.get("x-goog-api-key")
        if not url.path.startswith(PREFIX) or not url.path.endswith(SUFFIX):
            return self.send_json(404, error_body(404, "NOT_FOUND", f"no route {url.path}"))
        if not key:
            return self.send_json(403, error_body(403, "PERMISSION_DENIED",
                                                  "Method doesn't allow unregistered callers. Please use API Key."))
        if key != self.server.key:
            return self.send_json(400, error_body(400, "INVALID_ARGUMENT",
                                                  "API key not valid. Please pass a valid API key."))
        if model not in MODELS:
            return self.send_json(404, error_body(
                404, "NOT_FOUND", f"models/{model} is not found for API version v1beta, or is not "
                                  "supported for generateContent."))
        if model == "gemini-tools":
            return self.tools(record["body"])
        self.stream(model, record)

    def tools(self, request: dict) -> None:
        """A thought, then every declared function called at once; or the results, quoted."""
        results = [p["functionResponse"] for p in request["contents"][-1]["parts"] if "functionResponse" in p]
        usage = {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}
        if results:
            events = [{"parts": [{"text": "Results: "}]}, {"parts": [{"text": json.dumps(results)}]}]
        else:
            names = [d["name"] for t in request.get("tools", []) for d in t.get("functionDeclarations", [])]
            events = [{"parts": [{"text": "Which tools fit?", "thought": True}]},
                      {"parts": [{"functionCall": {"name": name, "args": {"city": city}}}
                                 for name, city in zip(names, ["Paris", "Rome"])]}]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for n, content in enumerate(events):
            event = {"candidates": [{"content": {"role": "model", **content}, "index": 0}], "modelVersion": "t"}
            if n == len(events) - 1:
                event["candidates"][0]["finishReason"] = "STOP"
                event["usageMetadata"] = usage
            self.chunk(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
        self.chunk(b"")

    def send_json(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def stream(self, model: str, record: dict) -> None:
        request = record["body"]
        contents = request.get("contents", [])
        system = " ".join(p.get("text", "") for p in request.get("systemInstruction", {}).get("parts", []))
        last_user = next((c for c in reversed(contents) if c.get("role") == "user"), {"parts": []})
        pieces = [w + " " for p in last_user["parts"] for w in p.get("text", "").split()]
        pieces = ([f"[{system}] "] if system else []) + pieces
        if model == "gemini-long":
            pieces = [f"w{i} " for i in range(200)]
        limit = request.get("generationConfig", {}).get("maxOutputTokens")
        reason = "STOP"
        if limit is not None and len(pieces) > limit:
            pieces, reason = pieces[:limit], "MAX_TOKENS"
        usage = {"promptTokenCount": words(contents) + len(system.split()),
                 "candidatesTokenCount": len(pieces)}
        usage["totalTokenCount"] = usage["promptTokenCount"] + usage["candidatesTokenCount"]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for n, piece in enumerate(pieces):
                if n:
                    time.sleep(STALL if model == "gemini-stall" and n == 1 else DELAY)
                event = {"candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}],
                         "modelVersion": model}
                if n == len(pieces) - 1:
                    event["candidates"][0]["finishReason"] = reason
                    event["usageMetadata"] = usage
                self.chunk(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
                if model == "gemini-broken" and n == 1:
                    self.close_connection = True
                    return  # no terminating chunk: the body is incomplete
            self.chunk(b"")
            record["client_left"] = False
        except (BrokenPipeError, ConnectionResetError):
            record["client_left"] = True
            self.close_connection = True


class FakeGemini(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, key: str = KEY):
        super().__init__(("127.0.0.1", 0), Handler)
        self.key = key
        self.requests: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def fake_gemini(key: str = KEY):
    """A running fake on a free loopback port; yields the server (`.url`, `.requests`)."""
    server = FakeGemini(key)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
