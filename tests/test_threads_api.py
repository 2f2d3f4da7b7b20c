"""Fast tier: threads on the server through the routes (in process, scripted provider): turns
write questions and replies into a tree, edits and regenerates are branches, the model sees the
chosen path, devices sync by revision, and bad requests change nothing."""
import json
import threading
import time

import jwt
import pytest

from tests.test_chat_routes import SECRET, events_of

HISTORY = "scripted/history"  # replies with the conversation it was given: `role: content | ` each


def ask(client, user_headers=None, **body):
    """A turn over SSE: (start data, the reply's text)."""
    events = events_of(client.post("/api/chat/stream", json={"model": HISTORY, **body}, headers=user_headers or {}))
    assert events[-1].type == "done", events[-1].data
    return events[0].json(), "".join(e.json()["token"] for e in events if e.type == "token")


def as_user(user: str) -> dict:
    token = jwt.encode({"sub": user, "exp": time.time() + 600}, SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def text(message) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def tree(client, thread_id) -> dict:
    r = client.get(f"/api/threads/{thread_id}")
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def path(thread: dict) -> list[str]:
    """The texts from the root down to the current leaf."""
    by_id = {m["id"]: m for m in thread["messages"]}
    out, at = [], by_id.get(thread["current_leaf"])
    while at:
        out.append(text(at))
        at = by_id.get(at["parent_id"])
    return out[::-1]


def test_a_turn_writes_its_question_and_reply_into_a_thread(client):
    start, reply = ask(client, message="Name a river.")
    assert start["thread_id"] == start["session_id"] and start["question_id"] and start["reply_id"]
    assert reply == "user: Name a river. | "
    thread = tree(client, start["thread_id"])
    assert thread["title"] == "Name a river." and thread["current_leaf"] == start["reply_id"]
    question, answer = thread["messages"]
    assert (question["id"], question["role"], question["parent_id"]) == (start["question_id"], "user", None)
    assert (answer["id"], answer["parent_id"], answer["status"]) == (start["reply_id"], question["id"], "complete")
    assert answer["parts"] == [{"type": "text", "text": reply}] and answer["model"] == HISTORY
    assert answer["usage"]["completion_tokens"] > 0 and answer["timings"]["duration_ms"] > 0


def test_edits_and_regenerates_are_branches_and_the_model_sees_only_the_chosen_path(client):
    first, _ = ask(client, message="one")
    thread_id = first["thread_id"]
    second, _ = ask(client, message="two", thread_id=thread_id)
    edit, reply = ask(client, message="TWO", thread_id=thread_id, parent_id=first["reply_id"])  # beside "two"
    assert reply == "user: one | assistant: user: one |  | user: TWO | "  # "two" is not on this path
    again, _ = ask(client, thread_id=thread_id, parent_id=edit["question_id"])  # regenerate: a sibling reply
    assert again["question_id"] == edit["question_id"] and again["reply_id"] != edit["reply_id"]
    root, _ = ask(client, message="uno", thread_id=thread_id, parent_id=None)  # an edit of the first question
    thread = tree(client, thread_id)
    assert len(thread["messages"]) == 9 and path(thread) == ["uno", "user: uno | "]
    parents = {m["id"]: m["parent_id"] for m in thread["messages"]}
    assert parents[second["question_id"]] == parents[edit["question_id"]] == first["reply_id"]
    assert parents[again["reply_id"]] == parents[edit["reply_id"]] == edit["question_id"]
    assert parents[root["question_id"]] is None
    # Choosing the other branch remembers the choice at each fork, and the model follows it.
    r = client.patch(f"/api/threads/{thread_id}", json={"current_leaf": second["reply_id"]})
    assert r.status_code == 200 and r.get_json()["current_leaf"] == second["reply_id"]
    _, reply = ask(client, message="three", thread_id=thread_id)
    assert reply.startswith("user: one | ") and "user: two | " in reply and "TWO" not in reply


def test_sessions_are_a_view_of_the_threads_current_path(client):
    start, _ = ask(client, message="first")
    ask(client, message="second", session_id=start["session_id"])
    session = client.get(f"/api/chat/sessions/{start['session_id']}").get_json()
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("user", "first"), ("assistant", "user: first | "), ("user", "second"),
        ("assistant", "user: first | assistant: user: first |  | user: second | ")]
    assert session["messages"][-1]["status"] == "complete" and session["messages"][-1]["tokens"] > 0
    assert start["session_id"] in [s["id"] for s in client.get("/api/chat/sessions").get_json()["sessions"]]
    r = client.post("/api/chat/stream", json={"message": "x", "session_id": "gone-session"})
    assert r.status_code == 404 and r.get_json()["error"]["type"] == "session_not_found"


def test_devices_sync_by_revision_deletions_included(client):
    synced = client.get("/api/threads").get_json()
    a, _ = ask(client, message="kept")
    b, _ = ask(client, message="deleted")
    changed = client.get(f"/api/threads?since={synced['revision']}").get_json()
    assert {t["id"] for t in changed["threads"]} == {a["thread_id"], b["thread_id"]}
    assert client.delete(f"/api/threads/{b['thread_id']}").status_code == 204
    later = client.get(f"/api/threads?since={changed['revision']}").get_json()
    assert later["threads"] == [] and later["deleted"] == [b["thread_id"]] and later["revision"] > changed["revision"]
    assert client.get(f"/api/threads/{b['thread_id']}").status_code == 404


def test_a_branch_is_deleted_whole_and_a_message_edited_in_place(client):
    start, _ = ask(client, message="q")
    thread_id = start["thread_id"]
    other, _ = ask(client, thread_id=thread_id, parent_id=start["question_id"])
    assert client.delete(f"/api/threads/{thread_id}/messages/{other['reply_id']}").status_code == 204
    assert path(tree(client, thread_id)) == ["q", "user: q | "]
    r = client.patch(f"/api/threads/{thread_id}/messages/{start['question_id']}",
                     json={"parts": [{"type": "text", "text": "q, fixed"}]})
    assert r.status_code == 200 and text(r.get_json()) == "q, fixed"
    r = client.post(f"/api/threads/{thread_id}/messages",
                    json={"parent_id": start["reply_id"], "role": "user", "parts": [{"type": "text", "text": "note"}]})
    assert r.status_code == 201 and path(tree(client, thread_id))[-1] == "note"


def test_the_change_stream_says_at_once_when_a_device_is_behind(client):
    since = client.get("/api/threads").get_json()["revision"]
    ask(client, message="news")
    response = client.get(f"/api/threads/changes?since={since}", buffered=False)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    first = next(iter(response.response))
    response.close()
    assert first.startswith(b"event: changed\n") and json.loads(first.split(b"data: ")[1])["revision"] > since


def test_the_change_stream_opens_at_once_when_a_device_is_up_to_date(make_app):
    client = make_app(keepalive_seconds=600).test_client()
    since = client.get("/api/threads").get_json()["revision"]
    opened = []

    def open_stream():  # the test client returns with the first bytes, as a browser's `open` comes
        response = client.get(f"/api/threads/changes?since={since}", buffered=False)
        opened.append(next(iter(response.response)))
        response.close()

    reader = threading.Thread(target=open_stream, daemon=True)
    reader.start()
    reader.join(30)  # held until the first keepalive, it would open after 600 s
    assert opened == [b": ping\n\n"]


@pytest.mark.parametrize("request_body,status,words", [
    ({"message": "x", "thread_id": "nope"}, 404, "no thread 'nope'"),
    ({"thread_id": "THREAD"}, 400, "parent_id names the question"),
    ({"thread_id": "THREAD", "parent_id": "REPLY"}, 400, "parent_id must name the question"),
    ({"message": "x", "thread_id": "THREAD", "parent_id": "nope"}, 400, "parent_id: no message 'nope'"),
    ({"message": "x", "parent_id": "REPLY"}, 400, "parent_id needs the thread_id"),
    ({"message": "x", "thread_id": "THREAD", "session_id": "other"}, 400, "send one"),
])
def test_bad_turn_requests_are_refused_and_change_nothing(client, request_body, status, words):
    start, _ = ask(client, message="q")
    before = client.get("/api/threads").get_json()["revision"]
    body = json.loads(json.dumps(request_body).replace("THREAD", start["thread_id"]).replace("REPLY", start["reply_id"]))
    r = client.post("/api/chat/stream", json={"model": HISTORY, **body})
    assert r.status_code == status and words in r.get_json()["error"]["message"], r.get_json()
    assert client.get("/api/threads").get_json()["revision"] == before


def test_other_users_threads_do_not_exist(make_app):
    client = make_app(jwt_secret=SECRET).test_client()
    alice, mallory = as_user("alice"), as_user("mallory")
    start, _ = ask(client, alice, message="private")
    assert client.get(f"/api/threads/{start['thread_id']}", headers=mallory).status_code == 404
    assert client.get("/api/threads", headers=mallory).get_json()["threads"] == []
    r = client.post("/api/chat/stream", headers=mallory, json={"model": HISTORY, "message": "x",
                                                                "thread_id": start["thread_id"]})
    assert r.status_code == 404
    mine, _ = ask(client, mallory, message="mine")
    r = client.post("/api/chat/stream", headers=mallory, json={"model": HISTORY, "message": "x",
                                                                "thread_id": mine["thread_id"],
                                                                "parent_id": start["question_id"]})
    assert r.status_code == 400 and "parent_id" in r.get_json()["error"]["message"]  # a parent in alice's thread


@pytest.mark.parametrize("route,body,words", [
    ("/api/threads/THREAD/messages", {"role": "user", "parts": [{"type": "file", "file_id": "f1"}]},
     "parts.0: no file 'f1' of yours"),
    ("/api/threads/THREAD/messages", {"role": "robot", "parts": [{"type": "text", "text": "x"}]}, "role"),
    ("/api/threads/THREAD/messages", {"role": "user", "parts": []}, "parts"),
    ("/api/threads/THREAD", {"current_leaf": "nope"}, "current_leaf"),
    ("/api/threads/THREAD", {"colour": "red"}, "colour: unknown field"),
])
def test_bad_thread_requests_name_the_problem(client, route, body, words):
    start, _ = ask(client, message="q")
    url = route.replace("THREAD", start["thread_id"])
    r = client.patch(url, json=body) if url.endswith(start["thread_id"]) else client.post(url, json=body)
    assert r.status_code == 400 and words in r.get_json()["error"]["message"], r.get_json()
    assert client.get("/api/threads?since=99999").status_code == 400


def test_search_finds_a_word_that_is_only_on_another_branch(client):
    start, _ = ask(client, message="rivers of europe")
    other, _ = ask(client, message="the volga please", thread_id=start["thread_id"], parent_id=None)
    client.patch(f"/api/threads/{start['thread_id']}", json={"current_leaf": start["reply_id"]})
    hits = client.get("/api/search?q=volga").get_json()["hits"]
    assert {h["message_id"] for h in hits} == {other["question_id"], other["reply_id"]}  # the reply repeats it
    assert all(h["thread_id"] == start["thread_id"] and "<mark>volga</mark>" in h["snippet"] for h in hits)
    assert client.get("/api/search?q=").status_code == 400
    assert client.get("/api/search?q=" + "x" * 501).status_code == 400


def test_a_share_link_shows_its_snapshot_to_anyone_until_revoked(make_app):
    client = make_app(jwt_secret=SECRET).test_client()
    alice = as_user("alice")
    start, reply = ask(client, alice, message="share me")
    r = client.post(f"/api/threads/{start['thread_id']}/share", headers=alice)
    assert r.status_code == 201
    token, url = r.get_json()["token"], r.get_json()["url"]
    assert len(token) >= 32 and url.endswith(f"/s/{token}")
    ask(client, alice, message="later, not shared", thread_id=start["thread_id"])
    shared = client.get(f"/api/shared/{token}")  # signed out
    assert shared.status_code == 200 and shared.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert [text(m) for m in shared.get_json()["messages"]] == ["share me", reply]  # the snapshot
    page = client.get(f"/s/{token}")
    assert page.status_code == 200 and b'name="robots" content="noindex' in page.data
    assert client.delete(f"/api/threads/{start['thread_id']}/share/{token}", headers=as_user("mallory")).status_code == 404
    assert client.delete(f"/api/threads/{start['thread_id']}/share/{token}", headers=alice).status_code == 204
    assert client.get(f"/api/shared/{token}").status_code == 404
    again = client.post(f"/api/threads/{start['thread_id']}/share", headers=alice).get_json()["token"]
    client.delete(f"/api/threads/{start['thread_id']}", headers=alice)
    assert client.get(f"/api/shared/{again}").status_code == 404  # deleted with its thread


def test_with_public_sharing_off_a_share_needs_a_signed_in_user(make_app):
    client = make_app(jwt_secret=SECRET, share_public=False).test_client()
    start, _ = ask(client, as_user("alice"), message="members only")
    token = client.post(f"/api/threads/{start['thread_id']}/share", headers=as_user("alice")).get_json()["token"]
    assert client.get(f"/api/shared/{token}").status_code == 401
    assert client.get(f"/api/shared/{token}", headers=as_user("bob")).status_code == 200


def test_a_path_comes_a_page_at_a_time(client):
    start, _ = ask(client, message="one")
    for word in ("two", "three"):
        ask(client, message=word, thread_id=start["thread_id"])
    page = client.get(f"/api/threads/{start['thread_id']}/path?limit=2").get_json()
    assert [text(m) for m in page["messages"]] == ["three", "user: one | assistant: user: one |  | user: two | "
                                                   "assistant: user: one | assistant: user: one |  | user: two |  | "
                                                   "user: three | "] and page["has_more"]
    older = client.get(f"/api/threads/{start['thread_id']}/path?limit=50&before={page['messages'][0]['id']}")
    assert len(older.get_json()["messages"]) == 4 and not older.get_json()["has_more"]
    assert client.get(f"/api/threads/{start['thread_id']}/path?limit=0").status_code == 400
    assert client.get("/api/threads/nope/path").status_code == 404


def test_a_regenerate_shows_on_every_device_while_it_runs_and_a_branch_is_chosen_by_any_message(client):
    first, _ = ask(client, message="one")
    thread_id = first["thread_id"]
    ask(client, message="two", thread_id=thread_id)
    response = client.post("/api/chat/stream", json={"model": "scripted/hold", "thread_id": thread_id,
                                                     "parent_id": first["question_id"], "turn_id": "again-1234"})
    page = client.get(f"/api/threads/{thread_id}/path").get_json()
    assert page["thread"]["current_leaf"] == first["question_id"]  # the path ends where the reply is coming
    [running] = page["running"]
    assert (running["turn_id"], running["question_id"]) == ("again-1234", first["question_id"])
    client.post("/api/chat/turns/again-1234/cancel")
    assert events_of(response)[0].json()["reply_id"] == running["reply_id"]
    page = client.get(f"/api/threads/{thread_id}/path").get_json()
    assert page["running"] == [] and page["messages"][-1]["status"] == "cancelled"
    assert page["messages"][-1]["id"] == running["reply_id"]
    assert page["siblings"][page["messages"][-1]["id"]] == [first["reply_id"], page["messages"][-1]["id"]]
    # Choosing the first reply again shows its branch down to "two"'s reply, as the fork remembered it.
    r = client.patch(f"/api/threads/{thread_id}", json={"branch": first["reply_id"]})
    assert r.status_code == 200
    assert path(tree(client, thread_id))[:3] == ["one", "user: one | ", "two"]
    assert client.patch(f"/api/threads/{thread_id}", json={"branch": "nope"}).status_code == 400
    r = client.patch(f"/api/threads/{thread_id}", json={"branch": first["reply_id"], "current_leaf": first["reply_id"]})
    assert r.status_code == 400 and "not both" in r.get_json()["error"]["message"]
