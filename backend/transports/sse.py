"""The app's SSE wire format: one encoder, and the streaming response around it.

Flushing each event as it is written is the server's job: see app.py."""
from __future__ import annotations

import contextlib
import json
from typing import Iterator

from flask import Response

from ..chat.events import StreamEvent

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def encode(event: StreamEvent) -> bytes:
    """`id`, `event` and one `data` line (JSON never contains a raw newline)."""
    if event.kind == "ping":
        return b": ping\n\n"
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode()


def sse_response(events: Iterator[StreamEvent], headers: dict | None = None) -> Response:
    def body():
        with contextlib.closing(events):  # a client that leaves closes us, and so the turn
            for event in events:
                yield encode(event)

    return Response(body(), mimetype="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})
