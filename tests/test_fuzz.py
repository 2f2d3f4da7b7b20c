"""Property-based fuzzing with a bounded number of examples: no 5xx, no hang, no crash.

schemathesis generates requests from /openapi.json (valid and invalid); hypothesis throws
arbitrary JSON at the Socket.IO events. The server must still answer /health afterwards.
"""
import pytest
import requests
import schemathesis
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rill.config import Settings
from rill.openapi import build
from tests.server import start_server, stop_server

pytestmark = pytest.mark.slow

FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    # Tiny replies keep each generated chat request quick.
    srv = start_server("eventlet", tmp_path_factory.mktemp("fuzz"), RILL_MAX_TOKENS_CAP=4,
                       RILL_DEFAULT_MAX_TOKENS=2, RILL_KEEPALIVE_SECONDS=5)
    yield srv
    assert requests.get(f"{srv.url}/health", timeout=10).json()["status"] == "ok"
    assert srv.process.poll() is None  # still running
    stop_server(srv)


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


OPERATIONS = [(path, method.upper()) for path, item in build(Settings(), auth_enabled=False)["paths"].items() for method in item]


@pytest.mark.parametrize("path,method", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_http_api_never_answers_5xx(api_schema, path, method):
    @given(case=api_schema[path][method].as_strategy())
    @settings(max_examples=30, **FUZZ_SETTINGS)
    def check(case):
        # Sent by requests, not case.call: schemathesis reads every body to its end, and a stream
        # (the threads' change feed, the models' events) ends only at the timeout.
        with requests.request(**case.as_transport_kwargs(), timeout=30, stream=True) as response:
            if response.headers.get("Content-Type", "").startswith("text/event-stream"):
                assert response.status_code < 500  # a stream: its status is the answer
                return
            assert response.status_code < 500, f"{method} {path} -> {response.status_code}: {response.text[:300]}"
            if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith("application/json"):
                assert "error" in response.json()

    check()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
payloads = json_values | st.fixed_dictionaries(
    {"message": json_values | st.text(max_size=100)},
    optional={"temperature": json_values, "max_tokens": json_values, "session_id": json_values,
              "model": st.sampled_from(["scripted/echo", "local/nope", ""]) | json_values, "top_p": json_values},
)


def test_socketio_payloads_never_break_the_connection(fuzz_server):
    client = socketio.Client(reconnection=False)
    client.connect(fuzz_server.url, transports=["websocket"], wait_timeout=10)
    ends = []
    client.on("chat_complete", lambda data: ends.append(data["turn_id"]))
    client.on("chat_error", lambda data: ends.append(data["turn_id"]))

    @given(payload=payloads)
    @settings(max_examples=60, **FUZZ_SETTINGS)
    def send(payload):
        ack = client.call("chat_stream", payload, timeout=30)
        assert isinstance(ack, dict) and ("error" in ack or "turn_id" in ack), ack
        if "turn_id" in ack:  # wait for its end: one turn per connection
            for _ in range(300):
                if ack["turn_id"] in ends:
                    break
                client.sleep(0.05)
            assert ack["turn_id"] in ends
        cancel = client.call("chat_cancel", payload, timeout=10)
        assert isinstance(cancel, dict)
        assert client.connected

    try:
        send()
    finally:
        client.disconnect()
