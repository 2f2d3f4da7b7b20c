"""The SSE encoder every streaming route uses, and the streaming response around it.

Flushing each event as it is written is the server's job: see entry.py.
"""
from __future__ import annotations

import contextlib
import json
from json.encoder import c_make_encoder, encode_basestring
from typing import Callable, Iterator

import redis
from flask import Response

from .. import metrics
from ..chat.events import StreamEvent
from ..errors import error_body, status_of

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PING = b": ping\n\n"


def _json_encoder() -> Callable[[object], str]:
    """Compact JSON, UTF-8 as it is. The C encoder is called straight: JSONEncoder.encode's Python
    around it (and one encoder made per call, as json.dumps does) was a good part of an event's cost."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    if c_make_encoder is None:  # a Python built without _json
        return encoder.encode
    encode = c_make_encoder(None, encoder.default, encode_basestring, None, ":", ",", False, False, True)
    return lambda data: "".join(encode(data, 0))


to_json = _json_encoder()


def encode_text(text: str) -> bytes:
    """A string as a JSON value, for events built around it."""
    return encode_basestring(text).encode()


def format_event(data: dict | str, event: str | None = None, id: int | None = None) -> bytes:
    """One SSE event: optional `id` and `event` lines and one `data` line (JSON has no raw newline)."""
    if not isinstance(data, str):
        data = to_json(data)
    head = (f"id: {id}\n" if id is not None else "") + (f"event: {event}\n" if event else "")
    return f"{head}data: {data}\n\n".encode()


def encode(event: StreamEvent) -> bytes:
    """The app's own format: every event named and numbered."""
    if event.kind == "ping":
        return PING
    return format_event(event.data, event.kind, event.seq)


def sse_response(batches: Iterator[list[StreamEvent]], encoder: Callable[[StreamEvent], bytes] = encode,
                 headers: dict | None = None, on_close: Callable[[], None] | None = None,
                 api: str | None = None) -> Response:
    """Stream a turn log's batches of events as they come, each batch in one write. A client that
    leaves closes `batches` (its reader detaches); `on_close` runs then too, and also when the
    server drops the response before its first byte. `api`: a turn's reader, counted as an open
    stream of that api."""

    def body():
        with contextlib.closing(batches), metrics.streaming(api) if api else contextlib.nullcontext():
            try:
                for batch in batches:
                    if chunk := b"".join(map(encoder, batch)):
                        yield chunk
            except redis.RedisError as exc:  # the shared store went away: say so (no id: resume later)
                yield format_event(error_body(*status_of(exc)[1:]), "error")

    response = Response(body(), mimetype="text/event-stream", headers={**SSE_HEADERS, **(headers or {})},
                        direct_passthrough=True)  # bytes already: no encoding pass over each chunk
    if on_close:
        response.call_on_close(on_close)
    return response
