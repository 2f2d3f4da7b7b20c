"""Logs: one line per request and one per turn, as text or as JSON (RILL_LOG_FORMAT=json),
each with the request id (`X-Request-Id`, the client's when it sends a sane one, else ours).

Message and reply text are never logged unless RILL_LOG_CONTENT=1; tokens never are.
"""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
log = logging.getLogger("rill.requests")


class TextFormatter(logging.Formatter):
    """The usual line, then the record's own fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in vars(record).items() if k not in STANDARD}
        return line + "".join(f" {k}={v}" for k, v in fields.items() if v not in (None, ""))


class RequestIdFilter(logging.Filter):
    """Every line logged while a request is served carries its id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        return True


def configure(settings) -> None:
    handler = logging.StreamHandler()
    layout = "%(asctime)s %(levelname)s %(name)s %(message)s"
    handler.setFormatter(JsonFormatter(layout) if settings.log_format == "json" else TextFormatter(layout))
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def register(app: Flask) -> None:
    @app.before_request
    def _request_id():
        sent = request.headers.get("X-Request-Id", "")
        g.request_id = sent if REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        log.info("request", extra={
            "method": request.method, "path": request.path, "status": response.status_code,
            "user": g.get("user"), "duration_ms": round((time.perf_counter() - g.get("request_started", 0)) * 1000, 1)})
        return response
