"""The SSE encoder every streaming route uses, and the streaming response around it.

Flushing each event as it is written is the server's job: see entry.py.
"""
from __future__ import annotations

import contextlib
import json
from typing import Callable, Iterator

import redis
from flask import Response

from ..chat.events import StreamEvent
from ..errors import error_body, status_of

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PING = b": ping\n\n"
to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # made once: one per event is dear


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


def sse_response(events: Iterator[StreamEvent], encoder: Callable[[StreamEvent], bytes] = encode,
                 headers: dict | None = None, on_close: Callable[[], None] | None = None) -> Response:
    """Stream events as they come. A client that leaves closes `events` (its reader detaches);
    `on_close` runs then too, and also when the server drops the response before its first byte."""

    def body():
        with contextlib.closing(events):
            try:
                for event in events:
                    if chunk := encoder(event):
                        yield chunk
            except redis.RedisError as exc:  # the shared store went away: say so (no id: resume later)
                yield format_event(error_body(*status_of(exc)[1:]), "error")

    response = Response(body(), mimetype="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})
    if on_close:
        response.call_on_close(on_close)
    return response
