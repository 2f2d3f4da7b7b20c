"""Fast tier: what the chat routes refuse, and how: a 4xx with one JSON shape that names the
field and says what is wrong."""
import json

import pytest

LONG = "x" * 16001

BAD_INPUT = [
    # (description, body or raw bytes, content type, status, error type, words in message)
    ("invalid JSON", b"{not json", "application/json", 400, "invalid_request_error", "not valid JSON"),
    ("array body", b"[1, 2]", "application/json", 400, "invalid_request_error", "JSON object"),
    ("missing message", {}, None, 400, "invalid_request_error", "message: Field required"),
    ("empty message", {"message": "   "}, None, 400, "invalid_request_error", "must not be empty"),
    ("message not a string", {"message": 42}, None, 400, "invalid_request_error", "message"),
    ("oversize message", {"message": LONG}, None, 400, "invalid_request_error", "limit is 16000"),
    ("lone surrogate", b'{"message": "hi \\ud800"}', "application/json", 400, "invalid_request_error", "surrogate"),
    ("oversize system", {"message": "hi", "system": "s" * 8001}, None, 400, "invalid_request_error", "system: "),
    ("temperature too high", {"message": "hi", "temperature": 3}, None, 400, "invalid_request_error", "temperature"),
    ("temperature as string", {"message": "hi", "temperature": "0.5"}, None, 400, "invalid_request_error", "temperature"),
    ("top_p zero", {"message": "hi", "top_p": 0}, None, 400, "invalid_request_error", "top_p"),
    ("max_tokens zero", {"message": "hi", "max_tokens": 0}, None, 400, "invalid_request_error", "max_tokens"),
    ("max_tokens too large", {"message": "hi", "max_tokens": 10**6}, None, 400, "invalid_request_error", "at most"),
    ("max_tokens bool", {"message": "hi", "max_tokens": True}, None, 400, "invalid_request_error", "max_tokens"),
    ("unknown field", {"message": "hi", "temprature": 0}, None, 400, "invalid_request_error", "temprature: unknown field"),
    ("bad session id", {"message": "hi", "session_id": "../etc"}, None, 400, "invalid_request_error", "session_id"),
    ("unknown session", {"message": "hi", "session_id": "nope"}, None, 404, "session_not_found", "nope"),
    ("unknown model", {"message": "hi", "model": "local/gpt-9"}, None, 404, "model_not_found", "available: local/"),
    ("wrong content type", b"message=hi", "application/x-www-form-urlencoded", 415, "unsupported_media_type", "application/json"),
    ("no content type", b'{"message": "hi"}', "", 415, "unsupported_media_type", "application/json"),
    ("oversize body", b'{"message": "' + b"x" * 1_100_000 + b'"}', "application/json", 413, "request_too_large", "larger than"),
]


@pytest.mark.parametrize("path", ["/api/chat/stream", "/api/chat"])
@pytest.mark.parametrize("case", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_gets_a_clear_4xx(client, path, case):
    _, body, content_type, status, kind, words = case
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type or "application/json"} if content_type != "" else {}
    r = client.post(path, data=data, headers=headers)
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.headers["Content-Type"].startswith("application/json")
    error = r.get_json()["error"]
    assert error["type"] == kind and words in error["message"], error


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/api/chat/sessions/unknown", 404),
    ("DELETE", "/api/chat/sessions/unknown", 404),
    ("GET", "/api/chat/stream", 405),
    ("GET", "/no/such/route", 404),
])
def test_http_errors_share_the_json_shape(client, method, path, status):
    r = client.open(path, method=method)
    assert r.status_code == status and set(r.get_json()["error"]) == {"type", "message"}


@pytest.mark.parametrize("route,body,words", [
    ("/v1/chat/completions", {"logprobs": True}, "logprobs: not supported"),
    ("/v1/chat/completions", {"presence_penalty": 0.5, "logit_bias": {"1": 5}}, "logit_bias, presence_penalty: not"),
    ("/v1/chat/completions", {"modalities": ["text", "audio"]}, "modalities: not supported"),
    ("/v1/chat/completions", {"functions": [{"name": "f"}]}, "functions: not supported"),
    ("/v1/messages", {"top_k": 5}, "top_k: not supported"),
    ("/v1/messages", {"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking: not supported"),
])
def test_v1_fields_that_would_change_the_reply_are_refused_not_dropped(client, route, body, words):
    base = {"model": "scripted/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    reply = client.post(route, json={**base, **body})
    assert reply.status_code == 400 and words in reply.json["error"]["message"], reply.json
    idle = {"logprobs": False, "presence_penalty": 0, "logit_bias": {}, "modalities": ["text"]}
    if route == "/v1/chat/completions":  # the same fields asking for nothing are taken
        assert client.post(route, json={**base, **idle}).status_code == 200
