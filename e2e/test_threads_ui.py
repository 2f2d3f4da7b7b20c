"""Chats kept in IndexedDB: reload, follow-ups with history, export and import, and redoing replies."""
import json

import pytest
import requests
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def texts(app, selector):
    return [" ".join(t.split()) for t in app.page.locator(selector).all_text_contents()]


def session(server, session_id):
    return requests.get(f"{server.url}/api/chat/sessions/{session_id}", timeout=10)


def ask(app, text):
    app.send(text)
    app.wait_reply_done()


def thread(app, title):
    return app.page.locator(".thread").filter(has=app.page.locator(".thread-title", has_text=title))


def test_follow_up_uses_the_history_and_reload_restores_every_chat(app, server):
    app.open(temperature=0, maxTokens=16)
    ask(app, "My name is Zorblat.")
    ask(app, "What is my name?")
    session_id = app.idb_threads()[0]["sessionId"]
    messages = session(server, session_id).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    assert [m["content"] for m in messages[::2]] == ["My name is Zorblat.", "What is my name?"]
    first_chat = texts(app, ".message .body")
    first_stats = texts(app, ".from-assistant .stats")

    app.page.click("#new-thread")
    expect(app.page.locator(".message")).to_have_count(0)
    ask(app, "Hello there")
    app.reload()
    expect(app.page.locator(".thread-title")).to_have_text(["Hello there", "My name is Zorblat."])  # newest first
    expect(app.page.locator("#thread-title")).to_have_text("Hello there")
    expect(app.page.locator(".message")).to_have_count(2)

    thread(app, "My name is Zorblat.").locator(".thread-open").click()
    expect(app.page.locator(".message")).to_have_count(4)
    assert texts(app, ".message .body") == first_chat
    assert texts(app, ".from-assistant .stats") == first_stats
    # The restored chat goes on in the same server session.
    ask(app, "Thanks.")
    assert len(session(server, session_id).json()["messages"]) == 6


def test_export_all_and_import_round_trip(app, tmp_path):
    app.open(model="scripted/echo")
    ask(app, "alpha one")
    app.page.click("#new-thread")
    ask(app, "beta two")
    with app.page.expect_download() as download:
        app.page.click("#export-all")
    path = tmp_path / "all.json"
    download.value.save_as(path)
    exported = json.loads(path.read_text())
    assert exported["format"] == "rill.threads" and exported["version"] == 1
    assert [t["title"] for t in exported["threads"]] == ["beta two", "alpha one"]
    assert [m["content"] for m in exported["threads"][1]["messages"]] == ["alpha one", "alpha one "]

    for title in ("alpha one", "beta two"):
        item = thread(app, title)
        item.hover()
        item.get_by_role("button", name=f"Delete “{title}”").click()
        app.page.get_by_role("button", name="Delete", exact=True).click()
    expect(app.page.locator(".thread")).to_have_count(0)
    expect(app.page.locator("#thread-empty")).to_be_visible()

    app.page.set_input_files("#import-file", path)
    expect(app.page.locator(".notice")).to_contain_text("Imported 2 chats.")
    expect(app.page.locator(".thread")).to_have_count(2)
    expect(app.page.locator(".thread-title")).to_have_text(["beta two", "alpha one"])
    thread(app, "alpha one").locator(".thread-open").click()
    expect(app.page.locator("#thread-title")).to_have_text("alpha one")
    assert texts(app, ".message .body") == ["alpha one", "alpha one"]

    app.reload()  # the import is stored, not only shown
    expect(app.page.locator(".thread")).to_have_count(2)
    item = thread(app, "alpha one")
    item.hover()
    with app.page.expect_download() as download:
        item.get_by_role("button", name="Export “alpha one”").click()
    one = json.loads(open(download.value.path()).read())
    assert [t["title"] for t in one["threads"]] == ["alpha one"]
    assert [(m["role"], m["content"]) for m in one["threads"][0]["messages"]] == \
        [(m["role"], m["content"]) for m in exported["threads"][1]["messages"]]


def test_import_refuses_a_file_that_is_not_an_export(app, tmp_path):
    app.open()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"threads": "nope"}))
    app.page.set_input_files("#import-file", bad)
    expect(app.page.locator(".notice.error")).to_contain_text("not a Rill export")
    expect(app.page.locator(".thread")).to_have_count(0)


def test_rename_search_and_delete(app):
    app.open(model="scripted/echo")
    ask(app, "river delta facts")
    app.page.click("#new-thread")
    ask(app, "mountain peaks")

    item = thread(app, "river delta facts")
    item.hover()
    item.get_by_role("button", name="Rename “river delta facts”").click()
    app.page.keyboard.press("Control+a")
    app.page.keyboard.type("Geography")
    app.page.keyboard.press("Enter")
    expect(app.page.locator(".thread-title")).to_have_text(["mountain peaks", "Geography"])  # no new activity
    expect(app.page.locator("#thread-title")).to_have_text("mountain peaks")  # Enter did not open it

    app.page.fill("#thread-search", "delta")  # found by the text of its messages
    expect(app.page.locator(".thread")).to_have_count(1)
    expect(app.page.locator(".thread-title")).to_have_text("Geography")
    app.page.fill("#thread-search", "nothing like this")
    expect(app.page.locator("#thread-empty")).to_have_text("No chats match.")
    app.page.fill("#thread-search", "")
    expect(app.page.locator(".thread")).to_have_count(2)

    item = thread(app, "mountain peaks")
    item.hover()
    item.get_by_role("button", name="Delete “mountain peaks”").click()
    app.page.get_by_role("button", name="Cancel").click()
    expect(app.page.locator(".thread")).to_have_count(2)
    item.hover()
    item.get_by_role("button", name="Delete “mountain peaks”").click()
    app.page.get_by_role("button", name="Delete", exact=True).click()
    expect(app.page.locator(".thread")).to_have_count(1)
    expect(app.page.locator(".message")).to_have_count(0)  # it was open: a new chat shows

    app.reload()
    expect(app.page.locator(".thread-title")).to_have_text(["Geography"])
    expect(app.page.locator("#thread-title")).to_have_text("Geography")


def test_regenerate_and_edit_the_last_message(app, server):
    app.open(model="scripted/echo")
    ask(app, "one two")
    first_session = app.idb_threads()[0]["sessionId"]

    app.last_reply().hover()
    app.last_reply().get_by_role("button", name="Regenerate reply").click()
    app.wait_reply_done()
    expect(app.page.locator(".from-assistant")).to_have_count(1)
    expect(app.last_reply().locator(".body")).to_have_text("one two")
    # Asked again in the same session, which forgot the replaced answer.
    assert app.idb_threads()[0]["sessionId"] == first_session
    messages = session(server, first_session).json()["messages"]
    assert [m["content"] for m in messages] == ["one two", "one two "]

    question = app.page.locator(".from-user")
    question.hover()
    question.get_by_role("button", name="Edit message").click()
    editor = question.locator("textarea")
    expect(editor).to_be_focused()
    editor.fill("three four")
    editor.press("Enter")
    app.wait_reply_done()
    assert texts(app, ".message .body") == ["three four", "three four"]
    assert app.idb_threads()[0]["sessionId"] == first_session
    assert [m["content"] for m in session(server, first_session).json()["messages"]] == ["three four", "three four "]


def test_a_chat_the_server_forgot_is_restored_from_the_browsers_copy(app, server):
    app.open(model="scripted/echo")
    ask(app, "first question")
    old = app.idb_threads()[0]["sessionId"]
    assert requests.delete(f"{server.url}/api/chat/sessions/{old}", timeout=10).status_code == 204  # a restart, say
    ask(app, "second question")
    expect(app.page.locator(".notice.warning")).to_contain_text("no longer had this chat")
    expect(app.last_reply().locator(".body")).to_have_text("second question")
    new = app.idb_threads()[0]["sessionId"]
    assert new != old
    assert [m["content"] for m in session(server, new).json()["messages"]] == [
        "first question", "first question ", "second question", "second question "]  # the model keeps the context


def test_without_indexeddb_the_chat_works_and_says_it_is_not_kept(open_app):
    app = open_app()
    app.page.add_init_script("Object.defineProperty(window, 'indexedDB', {value: undefined})")
    app.open(model="scripted/echo")
    expect(app.page.locator(".notice.error")).to_contain_text("Chats cannot be saved")
    ask(app, "still works")
    expect(app.last_reply().locator(".body")).to_have_text("still works")
    expect(app.page.locator(".thread")).to_have_count(1)


def test_a_full_storage_is_reported(open_app):
    app = open_app()
    app.open(model="scripted/echo")
    app.page.evaluate("""() => {
        IDBObjectStore.prototype.put = function () { throw new DOMException("no room", "QuotaExceededError"); };
    }""")
    ask(app, "will not be kept")
    notice = app.page.locator(".notice.error")
    expect(notice).to_have_count(2)  # the chat and its message each failed once: said once each
    expect(notice.first).to_contain_text("storage for this site is full")
    expect(app.last_reply().locator(".body")).to_have_text("will not be kept")
