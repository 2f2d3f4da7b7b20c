"""Errors, their HTTP status and their one JSON shape.

ApiError            a request the web layer refuses: carries an HTTP status, a type and a message
Refused             (refusals.py) the domain will not do it: its type picks the status below
ProviderError       (providers/base.py) a model or upstream failed: its type picks the status below;
                    it ends a stream with an `error` event that carries the type
redis.RedisError    RILL_REDIS_URL's Redis is away: a 503 that says so

Every HTTP error, ours or Flask's, leaves as {"error": {"type": ..., "message": ...}}.
"""
from __future__ import annotations

import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from .providers.base import ProviderError
from .refusals import Refused


class ApiError(Exception):
    def __init__(self, status: int, type: str, message: str):
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message


REFUSAL_STATUS = {  # the domain's refusals, by type
    "invalid_request_error": 400,
    "provider_not_configured": 400,
    "session_not_found": 404,
    "thread_not_found": 404,
    "message_not_found": 404,
    "model_not_found": 404,
    "turn_not_found": 404,
    "response_not_found": 404,
    "file_not_found": 404,
    "request_too_large": 413,
    "unsupported_file_type": 415,
    "model_not_multimodal": 400,
    "mcp_server_unavailable": 503,
    "turn_exists": 409,
    "approval_not_awaited": 409,
    "too_many_turns": 429,
}
FAILURE_STATUS = {  # a model's or upstream's failures, by type (a turn's `error` event carries the type)
    "upstream_error": 502,
    "model_error": 502,
    "model_unavailable": 503,
    "interrupted": 503,
    "context_length_exceeded": 400,
    "invalid_request_error": 400,
}


def failure_status(type: str) -> int:
    """The HTTP status of a failure by its type: what the /v1 APIs' error shapes are chosen by."""
    return FAILURE_STATUS.get(type, 502)


def status_of(err: Exception) -> tuple[int, str, str]:
    """(HTTP status, type, message) for anything a request can end with."""
    if isinstance(err, Refused):
        return REFUSAL_STATUS.get(err.type, 400), err.type, err.message
    if isinstance(err, ProviderError):
        return failure_status(err.type), err.type, err.message
    if isinstance(err, ApiError):
        return err.status, err.type, err.message
    if isinstance(err, redis.RedisError):  # RILL_REDIS_URL's server is away: retrying later will do
        return 503, "store_unavailable", f"the shared store (Redis) is unavailable: {err}; retry shortly"
    raise TypeError(f"not a refusal: {err!r}")


HTTP_ERROR_TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "method_not_allowed",
    413: "request_too_large",
    403: "permission_error",
    415: "unsupported_media_type",
    429: "rate_limit_error",
}


def http_error_message(err: HTTPException) -> str:
    """What Flask's own errors say, made specific where the default text is vague."""
    from flask import request

    if err.code == 413:
        return f"request body is larger than {request.max_content_length} bytes"
    if err.code == 429:
        return f"rate limit exceeded ({err.description}); retry after the Retry-After header's seconds"
    return err.description or err.name


def error_body(type: str, message: str) -> dict:
    return {"error": {"type": type, "message": message}}


def error_response(status: int, type: str, message: str):
    return jsonify(error_body(type, message)), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    @app.errorhandler(Refused)
    @app.errorhandler(ProviderError)
    def _refused(err):
        return error_response(*status_of(err))

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        response, status = error_response(err.code or 500, HTTP_ERROR_TYPES.get(err.code, "http_error"),
                                          http_error_message(err))
        for name, value in err.get_headers():  # e.g. a 405's Allow
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(redis.RedisError)
    def _store_unavailable(err: redis.RedisError):
        return error_response(*status_of(err))

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        app.logger.exception("unhandled error")
        return error_response(500, "server_error", "internal server error; see the server log")
