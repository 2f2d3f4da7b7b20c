"""A spec-faithful SSE decoder (WHATWG HTML, "Interpreting an event stream"), used to judge our
output, plus a streaming HTTP client that records when each event arrived."""
from __future__ import annotations

import codecs
import http.client
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import urlparse


@dataclass
class Event:
    type: str
    data: str
    id: str
    arrived: float = 0.0

    def json(self):
        return json.loads(self.data)


class SSEDecoder:
    _newline = re.compile(r"\r\n|\r|\n")

    def __init__(self):
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._type = ""
        self._data: list[str] = []
        self.last_id = ""
        self.retry: int | None = None
        self.comments: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._utf8.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        self._buffer += text
        events = []
        while match := self._newline.search(self._buffer):
            if match.group() == "\r" and match.end() == len(self._buffer):
                break  # may be the first half of a CRLF split across chunks
            line, self._buffer = self._buffer[: match.start()], self._buffer[match.end() :]
            if event := self._line(line):
                events.append(event)
        return events

    def close(self) -> list[Event]:
        """End of stream: a trailing CR ends its line; an event not yet dispatched is dropped."""
        events = []
        if self._buffer.endswith("\r"):
            if event := self._line(self._buffer[:-1]):
                events.append(event)
        self._buffer = ""
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:])
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry":
            if value.isdigit():
                self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, kind = self._data, self._type
        self._data, self._type = [], ""
        if not data:
            return None
        return Event(kind or "message", "\n".join(data), self.last_id)


def decode_all(raw: bytes) -> list[Event]:
    decoder = SSEDecoder()
    return decoder.feed(raw) + decoder.close()


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
