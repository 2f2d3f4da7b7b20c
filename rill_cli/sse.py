"""A spec-faithful Server-Sent Events decoder (WHATWG HTML, "Interpreting an event stream"): the
terminal client reads Rill's streams with it, and the tests judge the server's output with it."""
from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass


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
