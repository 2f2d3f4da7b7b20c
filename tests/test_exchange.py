"""Fast tier: threads in and out (conversations/exchange.py through /api/threads): Markdown of a
path against a golden file, Rill JSON of a tree, imports of ChatGPT, Open WebUI and Rill files,
forks, and the files that are refused."""
import json

import pytest

from tests.server import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture
def thread(app):
    """A thread written through the store: thinking, an answer, a tool call and result, a stopped reply."""
    store, owner = app.extensions["rill"].threads, "anonymous"
    t = store.create_thread(owner, title="Weather talk")
    q = store.add_message(owner, t["id"], None, "user", [{"type": "text", "text": "Weather in Paris?"}])
    a = store.add_message(owner, t["id"], q["id"], "assistant", [
        {"type": "reasoning", "text": "I should call the weather tool."},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}],
        model="scripted/tools")
    r = store.add_message(owner, t["id"], a["id"], "tool", [
        {"type": "tool_result", "tool_call_id": "call_1", "content": "sunny, 21 C"}])
    store.add_message(owner, t["id"], r["id"], "assistant", [{"type": "text", "text": "Sunny and"}],
                      model="scripted/tools", status="cancelled")
    return t


def test_markdown_of_the_current_path_equals_the_golden_file(client, thread):
    r = client.get(f"/api/threads/{thread['id']}/export?format=markdown")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/markdown")
    assert r.get_data(as_text=True) == (FIXTURES / "export.md").read_text()


def test_a_json_export_imports_again_as_the_same_tree_once(client, thread):
    exported = client.get(f"/api/threads/{thread['id']}/export").get_json()
    assert exported["format"] == "rill.threads" and exported["version"] == 2
    first = client.post("/api/threads/import", json=exported).get_json()
    again = client.post("/api/threads/import", json=exported).get_json()
    assert (first, again) == ({"imported": 1, "skipped": 0}, {"imported": 0, "skipped": 1})
    copy = next(t for t in client.get("/api/threads").get_json()["threads"] if t["id"] != thread["id"])
    original, imported = (client.get(f"/api/threads/{i}").get_json() for i in (thread["id"], copy["id"]))
    shape = lambda t: [(m["role"], m["parts"], m["status"]) for m in t["messages"]]  # noqa: E731
    assert shape(imported) == shape(original) and imported["title"] == "Weather talk"


def test_a_chatgpt_export_imports_its_branches_as_siblings(client):
    data = json.loads((FIXTURES / "chatgpt-conversations.json").read_text())
    assert client.post("/api/threads/import", json=data).get_json() == {"imported": 1, "skipped": 0}
    assert client.post("/api/threads/import", json=data).get_json() == {"imported": 0, "skipped": 1}
    summary = client.get("/api/threads").get_json()["threads"][0]
    tree = client.get(f"/api/threads/{summary['id']}").get_json()
    question, *replies = tree["messages"]
    assert summary["title"] == "Rivers" and question["parts"] == [{"type": "text", "text": "Name a river."}]
    assert [r["parent_id"] for r in replies] == [question["id"]] * 2  # siblings: the system node is skipped
    assert tree["current_leaf"] == replies[1]["id"] and replies[1]["model"] == "gpt-4o"  # its current node


def test_an_open_webui_export_and_the_browsers_old_export_import(client):
    owui = json.loads((FIXTURES / "openwebui-export.json").read_text())
    assert client.post("/api/threads/import", json=owui).get_json()["imported"] == 1
    session = client.post("/api/chat/sessions", json={"messages": [{"role": "user", "content": "hi"}]}).get_json()
    old = {"format": "rill.threads", "version": 1, "threads": [{
        "id": "t1", "title": "Old chat", "sessionId": session["id"], "createdAt": "2026-11-01T10:00:00Z", "messages": [
            {"id": "m1", "seq": 0, "role": "user", "content": "hi"},
            {"id": "m2", "seq": 1, "role": "assistant", "content": "hello", "reasoning": "greet back",
             "status": "stopped"}]}]}
    assert client.post("/api/threads/import", json=old).get_json()["imported"] == 1
    titles = {t["title"]: t["id"] for t in client.get("/api/threads").get_json()["threads"]}
    path = client.get(f"/api/threads/{titles['Old chat']}").get_json()["messages"]
    assert path[1]["parts"] == [{"type": "reasoning", "text": "greet back"}, {"type": "text", "text": "hello"}]
    assert path[1]["status"] == "cancelled"
    assert session["id"] not in titles.values()  # the session that browser chat showed: replaced by it
    lake = client.get(f"/api/threads/{titles['Lakes']}").get_json()["messages"]
    assert [m["parts"][0]["text"] for m in lake] == ["Name a lake.", "Lake Baikal."]


@pytest.mark.parametrize("data,words", [
    ({"hello": "world"}, "not a file Rill imports"),
    ([{"mapping": {"a": {"parent": "b", "message": None}, "b": {"parent": "a", "message": None}}}], "cycle"),
    ({"format": "rill.threads", "version": 2, "threads": [{"id": "x", "messages": [
        {"id": "m", "parent_id": None, "role": "user", "parts": [{"type": "file", "file_id": "f"}]}]}]}, "no file 'f' of yours on this server"),
    ({"format": "rill.threads", "version": 2, "threads": [  # the good first thread is not added either
        {"id": "good", "messages": [{"id": "a", "parent_id": None, "role": "user", "parts": [{"type": "text", "text": "x"}]}]},
        {"id": "bad", "messages": [{"id": "b", "parent_id": "gone", "role": "user", "parts": [{"type": "text", "text": "y"}]}]}]},
     "its parent 'gone' is not in the file"),
    ({"format": "rill.threads", "version": 2, "threads": [{"id": "x", "messages": [
        {"id": "m", "parent_id": None, "role": "assistant", "parts": [{"type": "tool_call"}]}]}]}, "parts.0: a tool_call"),
    ({"format": "rill.threads", "version": 2, "threads": [{"id": "x", "messages": [
        {"parent_id": None, "role": "user", "parts": [{"type": "text", "text": "x"}]}]}]}, "not a valid Rill export: no 'id'"),
    ({"format": "rill.threads", "version": 2, "threads": "nope"}, "threads: a list"),
    ([{"mapping": {}}, {"title": "no mapping"}], "not a valid ChatGPT conversations.json: no 'mapping'"),
])
def test_files_rill_does_not_import_are_400s_that_change_nothing(client, data, words):
    before = client.get("/api/threads").get_json()["revision"]
    r = client.post("/api/threads/import", json=data)
    assert r.status_code == 400 and words in r.get_json()["error"]["message"], r.get_json()
    assert client.get("/api/threads").get_json()["revision"] == before


def test_a_50_mb_import_is_a_413_and_adds_nothing(client):
    before = client.get("/api/threads").get_json()["revision"]
    body = json.dumps({"format": "rill.threads", "version": 2, "threads": [], "padding": "x" * (50 << 20)})
    r = client.post("/api/threads/import", data=body, content_type="application/json")
    assert r.status_code == 413 and "RILL_MAX_IMPORT_BYTES" in r.get_json()["error"]["message"]
    assert client.get("/api/threads").get_json()["revision"] == before


def test_an_import_over_the_limit_is_a_413_that_names_it(make_app):
    client = make_app(max_import_bytes=1000).test_client()
    r = client.post("/api/threads/import", data=json.dumps([{"x": "y" * 2000}]), content_type="application/json")
    assert r.status_code == 413 and "RILL_MAX_IMPORT_BYTES" in r.get_json()["error"]["message"]


def test_a_branch_forks_into_a_thread_of_its_own(client, thread):
    tree = client.get(f"/api/threads/{thread['id']}").get_json()
    question = tree["messages"][0]
    r = client.post(f"/api/threads/{thread['id']}/fork", json={"leaf": tree["messages"][1]["id"]})
    assert r.status_code == 201
    fork = client.get(f"/api/threads/{r.get_json()['id']}").get_json()
    assert [m["parts"] for m in fork["messages"]] == [question["parts"], tree["messages"][1]["parts"]]
    assert fork["messages"][0]["id"] != question["id"] and fork["title"] == "Weather talk"
    assert client.post(f"/api/threads/{thread['id']}/fork", json={"leaf": "nope"}).status_code == 400


def test_a_session_continued_elsewhere_is_kept_beside_the_browsers_old_copy(client):
    session = client.post("/api/chat/sessions", json={"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "asked later, from the terminal"}]}).get_json()
    old = {"format": "rill.threads", "version": 1, "threads": [{
        "id": "t2", "title": "Old chat", "sessionId": session["id"], "messages": [
            {"id": "m1", "seq": 0, "role": "user", "content": "hi"},
            {"id": "m2", "seq": 1, "role": "assistant", "content": "hello"}]}]}
    assert client.post("/api/threads/import", json=old).get_json()["imported"] == 1
    ids = {t["id"] for t in client.get("/api/threads").get_json()["threads"]}
    assert session["id"] in ids and len(ids) == 2  # nothing of the later question is lost
