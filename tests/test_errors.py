"""Fast tier: every refusal and failure maps to one HTTP status and one JSON shape (errors.py)."""
import pytest

from rill.errors import ApiError, status_of
from rill.providers.base import ProviderError
from rill.refusals import Refused


@pytest.mark.parametrize("error,status", [
    (Refused("session_not_found", "gone"), 404), (Refused("model_not_found", "no"), 404),
    (Refused("turn_exists", "taken"), 409), (Refused("too_many_turns", "wait"), 429),
    (Refused("invalid_request_error", "bad"), 400),
    (ProviderError("down", "upstream_error"), 502), (ProviderError("broke"), 502),
    (ProviderError("not loaded", "model_unavailable"), 503), (ProviderError("bye", "interrupted"), 503),
    (ProviderError("too long", "context_length_exceeded"), 400),
    (ApiError(415, "unsupported_media_type", "json only"), 415),
])
def test_each_error_has_its_status_type_and_message(error, status):
    assert status_of(error) == (status, error.type, error.message)


def test_a_request_fault_is_not_counted_as_a_provider_failure():
    assert ProviderError("too long", "context_length_exceeded").request_fault
    assert not ProviderError("down", "upstream_error").request_fault


def test_failures_before_a_stream_are_json_with_the_mapped_status(client):
    r = client.post("/v1/chat/completions", json={"model": "scripted/nope", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "model_not_found"
    r = client.post("/api/chat", json={"message": "x", "model": "scripted/fail"})
    assert r.status_code == 502 and r.get_json()["error"]["type"] == "model_error"
