"""A streaming HTTP client that records when each SSE event arrived; the decoder is the terminal
client's (rill_cli.sse)."""
from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlparse

from rill_cli.sse import Event, SSEDecoder, decode_all  # noqa: F401 (the tests import them from here)


class SSEStream:
    """Iterate the SSE events of a request as they arrive (arrival time on each)."""

    def __init__(self, url: str, body: dict | None, timeout: float = 120, headers: dict | None = None):
        """POST `body` as JSON, or GET when it is None (following a turn's events)."""
        parsed = urlparse(url)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
        target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        if body is None:
            self.conn.request("GET", target, headers=headers or {})
        else:
            self.conn.request("POST", target, body=json.dumps(body),
                              headers={"Content-Type": "application/json", **(headers or {})})
        self.response = self.conn.getresponse()
        self.decoder = SSEDecoder()

    @property
    def headers(self):
        return self.response.headers

    def __iter__(self):
        while chunk := self.response.read1(65536):
            now = time.perf_counter()
            for event in self.decoder.feed(chunk):
                event.arrived = now
                yield event
        yield from self.decoder.close()

    def close(self) -> None:
        self.response.close()
        self.conn.close()
