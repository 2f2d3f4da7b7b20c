"""Fast tier: the chat routes in process (test client, scripted provider): start, follow again,
cancel, client-chosen turn ids, restoring a session, and their refusals."""
import time

import jwt
import pytest

from tests.sse import SSEDecoder

SECRET = "fast-tier-secret-that-is-long-enough-for-hs256"


def events_of(response) -> list:
    decoder = SSEDecoder()
    return decoder.feed(response.get_data()) + decoder.close()


def echo(client, message="one two three", **extra):
    return client.post("/api/chat/stream", json={"message": message, "model": "scripted/echo", **extra})


def test_a_turn_can_be_followed_again_from_any_event(client):
    first = events_of(echo(client, turn_id="client-chosen-1"))
    assert [e.type for e in first] == ["start", "token", "token", "token", "done"]
    assert first[0].json()["turn_id"] == "client-chosen-1"
    url = "/api/chat/turns/client-chosen-1/events"
    assert events_of(client.get(url)) == first
    assert [e.id for e in events_of(client.get(url, headers={"Last-Event-ID": "2"}))] == ["3", "4"]
    assert [e.id for e in events_of(client.get(url + "?after=3"))] == ["4"]
    assert client.get(url, headers={"Last-Event-ID": "4"}).status_code == 204


def test_turn_ids_are_unique(client):
    echo(client, turn_id="taken-turn-id").get_data()
    again = echo(client, turn_id="taken-turn-id")
    assert again.status_code == 409 and again.json["error"]["type"] == "turn_exists"
    short = echo(client, turn_id="x")
    assert short.status_code == 400 and "turn_id" in short.json["error"]["message"]


@pytest.mark.parametrize("header", ["x", "-1", "1.5", "", "1234567890"])
def test_a_malformed_last_event_id_is_a_400(client, header):
    echo(client, turn_id="for-bad-ids").get_data()
    r = client.get("/api/chat/turns/for-bad-ids/events", headers={"Last-Event-ID": header})
    assert r.status_code == 400 and "Last-Event-ID" in r.json["error"]["message"]


def test_other_users_turns_do_not_exist(make_app):
    client = make_app(jwt_secret=SECRET).test_client()

    def auth(user):
        token = jwt.encode({"sub": user, "exp": time.time() + 600}, SECRET, algorithm="HS256")
        return {"Authorization": f"Bearer {token}"}

    r = client.post("/api/chat/stream", json={"message": "mine", "model": "scripted/echo", "turn_id": "alices-turn"},
                    headers=auth("alice"))
    r.get_data()
    assert client.get("/api/chat/turns/alices-turn/events", headers=auth("alice")).status_code == 200
    for path in ("/api/chat/turns/alices-turn/events",):
        r = client.get(path, headers=auth("bob"))
        assert r.status_code == 404 and r.json["error"]["type"] == "turn_not_found"
    assert client.post("/api/chat/turns/alices-turn/cancel", headers=auth("bob")).status_code == 404


def test_cancel_a_running_turn_and_again_when_it_has_ended(client):
    response = client.post("/api/chat/stream", json={"message": "x", "model": "scripted/hold", "turn_id": "held-turn"})
    r = client.post("/api/chat/turns/held-turn/cancel")
    assert r.status_code == 202 and r.json["cancelled"] is True
    events = events_of(response)
    assert events[-1].json()["finish_reason"] == "cancelled"
    again = client.post("/api/chat/turns/held-turn/cancel")
    assert again.status_code == 200 and again.json == {"turn_id": "held-turn", "cancelled": False, "status": "cancelled"}


def test_a_lost_session_is_restored_from_the_clients_copy(client):
    copy = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada."}]
    created = client.post("/api/chat/sessions", json={"messages": copy})
    assert created.status_code == 201 and created.json["message_count"] == 2
    sid = created.json["id"]
    reply = client.post("/api/chat", json={"message": "What is my name?", "model": "scripted/echo", "session_id": sid})
    assert reply.status_code == 200
    history = client.get(f"/api/chat/sessions/{sid}").json["messages"]
    assert [m["content"] for m in history][:2] == ["My name is Ada.", "Hello Ada."]
    assert len(history) == 4


@pytest.mark.parametrize("body,words", [
    ({"messages": [{"role": "system", "content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": 5}]}, "content"),
    ({"messages": "hi"}, "messages"),
    ({"message": []}, "unknown field"),
])
def test_bad_restores_are_400s(client, body, words):
    r = client.post("/api/chat/sessions", json=body)
    assert r.status_code == 400 and words in r.json["error"]["message"]


def test_an_empty_post_still_creates_an_empty_session(client):
    r = client.post("/api/chat/sessions")
    assert r.status_code == 201 and r.json["message_count"] == 0
    assert client.post("/api/chat/sessions", data="not json", content_type="text/plain").status_code == 415


def test_sessions_persist_in_sqlite_by_default(make_app, tmp_path):
    app = make_app(data_dir=str(tmp_path / "data"))
    sid = app.test_client().post("/api/chat", json={"message": "keep me", "model": "scripted/echo"}).json["session_id"]
    app.extensions["rill"].threads.close()
    again = make_app(data_dir=str(tmp_path / "data")).test_client()
    assert [m["content"] for m in again.get(f"/api/chat/sessions/{sid}").json["messages"]] == ["keep me", "keep me "]
    assert (tmp_path / "data" / "sessions.db").exists()
