"""Fast tier: one vocabulary of turn events (rill/chat/events.py), and everything that names
them derives from it: the browser's table, the OpenAPI document, the events a turn writes."""
import json
import re
from dataclasses import MISSING, fields

import pytest

from rill.chat.events import EVENTS
from tests.server import ROOT
from tests.test_chat_routes import events_of


def test_the_browsers_table_is_the_servers():
    source = (ROOT / "rill" / "static" / "js" / "events.js").read_text()
    table = json.loads(re.search(r"export const EVENTS = (\{.*?\});", source, re.S).group(1))
    assert table == {kind: payload.socketio for kind, payload in EVENTS.items()}


def test_the_openapi_document_describes_every_payload_field(client):
    described = client.get("/openapi.json").get_json()["paths"]["/api/chat/stream"]["post"]["responses"]["200"][
        "content"]["text/event-stream"]["schema"]["x-events"]
    assert set(described) == set(EVENTS)
    for kind, payload in EVENTS.items():
        assert set(described[kind]["properties"]) == {f.name for f in fields(payload)}, kind
        assert described[kind]["x-socketio"] == payload.socketio
    assert {"stop_sequence", "hidden_states"} <= set(described["done"]["properties"])


@pytest.mark.parametrize("model,message", [("scripted/echo", "one two"), ("scripted/think", "2+2?"),
                                           ("scripted/tools", "weather?"), ("scripted/fail", "x")])
def test_every_event_a_turn_writes_matches_its_payload(client, model, message):
    events = events_of(client.post("/api/chat/stream", json={"message": message, "model": model}))
    assert events[-1].type in ("done", "error")
    for event in events:
        payload = EVENTS[event.type]
        data = event.json()
        required = {f.name for f in fields(payload) if f.default is MISSING}
        assert required <= set(data) <= {f.name for f in fields(payload)}, (event.type, data)
