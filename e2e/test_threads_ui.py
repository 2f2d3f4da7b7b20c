"""Chats kept on the server as trees, the page a synced cache: follow-ups and reloads, branches
(regenerate, edit, the arrows, delete, fork), search into another branch, export and import,
share links, two devices of one user, the cached chats while the server is away, and the
chats an older release kept in the browser."""
import json
import re
import uuid

import pytest
import requests
from playwright.sync_api import expect

from e2e.conftest import TIMEOUT_MS
from tests.server import free_port, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def texts(app, selector):
    return [" ".join(t.split()) for t in app.page.locator(selector).all_text_contents()]


def ask(app, text):
    app.send(text)
    app.wait_reply_done()
    wait_settled(app)


def wait_settled(app):
    """The reply ended and the thread was read again: every message shown has its server id."""
    app.page.wait_for_function("() => document.querySelectorAll('#messages .is-local').length === 0")


def thread(app, title):
    return app.page.locator(".thread").filter(has=app.page.locator(".thread-title", has_text=title))


def message(app, text):
    return app.page.locator(".message").filter(has=app.page.locator(".body", has_text=re.compile(f"^{re.escape(text)}$")))


def server_threads(server):
    return requests.get(f"{server.url}/api/threads", timeout=10).json()["threads"]


def server_path(server, thread_id):
    """The texts of the thread's current path, from the server."""
    tree = requests.get(f"{server.url}/api/threads/{thread_id}", timeout=10).json()
    by_id = {m["id"]: m for m in tree["messages"]}
    out, at = [], by_id.get(tree["current_leaf"])
    while at:
        out.append("".join(p["text"] for p in at["parts"] if p["type"] == "text"))
        at = by_id.get(at["parent_id"])
    return out[::-1]


def click_action(app, item, name):
    item.hover()
    item.get_by_role("button", name=name).click()


def test_follow_up_uses_the_history_and_reload_restores_every_chat(app, server):
    app.open(temperature=0, maxTokens=16)
    ask(app, "My name is Zorblat.")
    ask(app, "What is my name?")
    [only] = server_threads(server)
    assert server_path(server, only["id"])[::2] == ["My name is Zorblat.", "What is my name?"]
    first_chat = texts(app, ".message .body")
    first_stats = texts(app, ".from-assistant .stats")
    assert all("tok/s" in s for s in first_stats)

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
    ask(app, "Thanks.")  # the chat goes on in the same thread
    assert len(server_path(server, only["id"])) == 6


def test_regenerate_and_edit_are_branches_with_arrows_and_the_choice_is_remembered(app, server):
    app.open(model="scripted/history")
    ask(app, "one")
    ask(app, "two")
    first_reply = app.page.locator(".from-assistant").first
    first_id = first_reply.get_attribute("data-id")

    click_action(app, first_reply, "Regenerate reply (a new version beside this one)")
    app.wait_reply_done()
    wait_settled(app)
    expect(app.page.locator(".message")).to_have_count(2)  # the new version ends its branch: "two" is on the other
    reply = app.page.locator(".from-assistant").first
    expect(reply.locator(".branch-count")).to_have_text("2/2")
    second_id = reply.get_attribute("data-id")
    assert second_id != first_id

    reply.get_by_role("button", name="Previous version of this reply").click()
    expect(app.page.locator(".from-assistant").first).to_have_attribute("data-id", first_id)  # the right reply
    expect(app.page.locator(".from-assistant").first.locator(".branch-count")).to_have_text("1/2")
    assert texts(app, ".from-user .body") == ["one", "two"]  # and the branch below it, as it was
    app.reload()
    expect(app.page.locator(".from-assistant").first.locator(".branch-count")).to_have_text("1/2")
    assert texts(app, ".from-user .body") == ["one", "two"]

    question = message(app, "two")
    click_action(app, question, "Edit message")
    editor = question.locator("textarea")
    expect(editor).to_be_focused()
    editor.fill("TWO")
    editor.press("Enter")  # Save & rerun: a new branch beside "two"
    app.wait_reply_done()
    wait_settled(app)
    assert texts(app, ".from-user .body") == ["one", "TWO"]
    expect(message(app, "TWO").locator(".branch-count")).to_have_text("2/2")
    expect(app.page.locator(".from-assistant").last.locator(".body")).to_have_text(
        "user: one | assistant: user: one | | user: TWO |")  # the model saw this branch only

    question = message(app, "TWO")
    click_action(app, question, "Edit message")
    question.locator("textarea").fill("TWO, saved")
    question.get_by_role("button", name="Save", exact=True).click()  # in place: no new reply
    expect(message(app, "TWO, saved")).to_have_count(1)
    expect(app.page.locator(".message")).to_have_count(4)
    [only] = server_threads(server)
    assert server_path(server, only["id"])[2] == "TWO, saved"

    click_action(app, message(app, "TWO, saved"), "Delete this message and everything below it")
    app.page.get_by_role("button", name="Delete", exact=True).click()
    expect(message(app, "TWO, saved")).to_have_count(0)
    expect(message(app, "two").locator(".branches")).to_be_hidden()  # one version left: no arrows

    click_action(app, app.page.locator(".from-assistant").first, "Fork: a new chat with the conversation up to here")
    expect(app.page.locator(".thread")).to_have_count(2)
    expect(app.page.locator(".message")).to_have_count(2)
    assert texts(app, ".from-user .body") == ["one"]
    expect(app.page.locator(".notice")).to_contain_text("Forked into a new chat")


def test_search_finds_a_word_only_on_another_branch_and_opens_that_branch(app):
    app.open(model="scripted/echo")
    ask(app, "rivers of europe")
    question = message(app, "rivers of europe")
    click_action(app, question, "Edit message")
    question.locator("textarea").fill("the volga flows south")
    question.locator("textarea").press("Enter")
    app.wait_reply_done()
    wait_settled(app)
    app.page.locator(".from-user").get_by_role("button", name="Previous version of this question").click()
    expect(app.page.locator(".from-user .body")).to_have_text("rivers of europe")

    app.page.fill("#thread-search", "volga")
    hits = app.page.locator(".thread.hit")
    expect(hits).to_have_count(2)  # the question and its echo
    expect(hits.first.locator(".thread-snippet mark")).to_have_text("volga")
    # The found message is marked for two seconds: recorded as it happens, not looked for after.
    app.page.evaluate("""() => {
        window.__found = [];
        new MutationObserver((changes) => {
            for (const change of changes) {
                if (change.target.classList?.contains("is-found")) window.__found.push(change.target.innerText);
            }
        }).observe(document, { subtree: true, attributes: true, attributeFilter: ["class"] });
    }""")
    hits.first.locator(".thread-open").click()
    expect(app.page.locator(".from-user .body")).to_have_text("the volga flows south")
    app.page.wait_for_function("() => window.__found.length > 0")
    assert all("the volga flows south" in found for found in app.page.evaluate("window.__found"))
    app.page.fill("#thread-search", "nothing like this")
    expect(app.page.locator("#thread-empty")).to_have_text("No chats match.")
    app.page.fill("#thread-search", "")
    expect(app.page.locator(".thread")).to_have_count(1)


def test_export_all_and_import_round_trip_and_markdown_of_one(app, tmp_path):
    app.open(model="scripted/echo")
    ask(app, "alpha one")
    app.page.click("#new-thread")
    ask(app, "beta two")
    with app.page.expect_download() as download:
        app.page.click("#export-all")
    path = tmp_path / "all.json"
    download.value.save_as(path)
    exported = json.loads(path.read_text())
    assert exported["format"] == "rill.threads" and exported["version"] == 2
    assert [t["title"] for t in exported["threads"]] == ["beta two", "alpha one"]
    assert [m["parts"] for m in exported["threads"][1]["messages"]] == [
        [{"type": "text", "text": "alpha one"}], [{"type": "text", "text": "alpha one "}]]

    item = thread(app, "alpha one")
    item.hover()
    with app.page.expect_download() as download:
        item.get_by_role("button", name="Export as Markdown “alpha one”").click()
    assert download.value.suggested_filename == "rill-alpha-one.md"
    markdown = open(download.value.path()).read()
    assert markdown == "# alpha one\n\n**You**\n\nalpha one\n\n**Assistant** (scripted/echo)\n\nalpha one\n"

    for title in ("alpha one", "beta two"):
        click_action(app, thread(app, title), f"Delete “{title}”")
        app.page.get_by_role("button", name="Delete", exact=True).click()
    expect(app.page.locator(".thread")).to_have_count(0)
    expect(app.page.locator("#thread-empty")).to_be_visible()

    app.page.set_input_files("#import-file", path)
    expect(app.page.locator(".notice")).to_contain_text("Imported 2 chats.")
    expect(app.page.locator(".thread-title")).to_have_text(["beta two", "alpha one"])
    thread(app, "alpha one").locator(".thread-open").click()
    expect(app.page.locator("#thread-title")).to_have_text("alpha one")
    expect(app.page.locator(".message .body")).to_have_text(["alpha one", "alpha one"])
    app.page.set_input_files("#import-file", path)  # the same file again adds nothing
    expect(app.page.locator(".notice").last).to_contain_text("Nothing new")
    app.reload()
    expect(app.page.locator(".thread")).to_have_count(2)


def test_import_refuses_a_file_that_is_not_an_export(app, tmp_path):
    app.open()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"threads": "nope"}))
    app.page.set_input_files("#import-file", bad)
    expect(app.page.locator(".notice.error")).to_contain_text("not a file Rill imports")
    expect(app.page.locator(".thread")).to_have_count(0)


def test_rename_and_delete(app):
    app.open(model="scripted/echo")
    ask(app, "river delta facts")
    app.page.click("#new-thread")
    ask(app, "mountain peaks")

    click_action(app, thread(app, "river delta facts"), "Rename “river delta facts”")
    app.page.keyboard.press("Control+a")
    app.page.keyboard.type("Geography")
    app.page.keyboard.press("Enter")
    expect(app.page.locator(".thread-title")).to_contain_text(["Geography"])
    expect(app.page.locator("#thread-title")).to_have_text("mountain peaks")  # Enter did not open it

    item = thread(app, "mountain peaks")
    click_action(app, item, "Delete “mountain peaks”")
    app.page.get_by_role("button", name="Cancel").click()
    expect(app.page.locator(".thread")).to_have_count(2)
    click_action(app, item, "Delete “mountain peaks”")
    app.page.get_by_role("button", name="Delete", exact=True).click()
    expect(app.page.locator(".thread")).to_have_count(1)
    expect(app.page.locator(".message")).to_have_count(0)  # it was open: a new chat shows

    app.reload()
    expect(app.page.locator(".thread-title")).to_have_text(["Geography"])
    expect(app.page.locator("#thread-title")).to_have_text("Geography")


def test_a_share_link_shows_the_branch_to_anyone_until_revoked(app, open_app):
    app.open(model="scripted/echo")
    ask(app, "share this answer")
    click_action(app, thread(app, "share this answer"), "Share “share this answer”")
    dialog = app.page.locator("#share")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="New link").click()
    link = dialog.locator(".share-link input")
    expect(link).to_have_count(1)
    url = link.input_value()
    assert re.fullmatch(rf"{re.escape(app.server.url)}/s/[A-Za-z0-9_-]{{32}}", url)

    stranger = open_app()  # another browser, nobody signed in
    stranger.page.goto(url)
    stranger.page.wait_for_selector("html[data-ready]")
    expect(stranger.page.locator("#shared-title")).to_have_text("share this answer")
    expect(stranger.page.locator(".message .body")).to_have_text(["share this answer", "share this answer"])
    assert stranger.page.locator("meta[name=robots]").get_attribute("content").startswith("noindex")

    dialog.get_by_role("button", name="Revoke").click()
    expect(link).to_have_count(0)
    stranger.page.reload()
    stranger.page.wait_for_selector("html[data-ready]")
    expect(stranger.page.locator("#shared-status")).to_contain_text("does not exist, or was revoked")


def test_a_thread_of_10000_messages_opens_at_its_newest_page(app, server):
    messages = [{"id": f"m{n}", "parent_id": f"m{n - 1}" if n else None, "role": ("user", "assistant")[n % 2],
                 "parts": [{"type": "text", "text": f"message {n}"}]} for n in range(10_000)]
    body = {"format": "rill.threads", "version": 2, "threads": [{"id": uuid.uuid4().hex, "title": "Long one",
                                                                 "current_leaf": "m9999", "messages": messages}]}
    assert requests.post(f"{server.url}/api/threads/import", json=body, timeout=60).json()["imported"] == 1
    app.open()
    thread(app, "Long one").locator(".thread-open").click()
    expect(app.page.locator(".message")).to_have_count(50)
    expect(app.page.locator(".message .body").last).to_have_text("message 9999")
    older = app.page.locator("#older")
    expect(older).to_be_visible()
    older.click()
    expect(app.page.locator(".message")).to_have_count(100)
    expect(app.page.locator(".message .body").first).to_have_text("message 9900")


def test_cached_chats_show_while_the_server_is_away(app):
    app.open(model="scripted/echo")
    ask(app, "kept for later")
    app.page.route(re.compile(r".*/api/.*"), lambda route: route.abort())
    app.reload()
    expect(app.page.locator("#offline")).to_be_visible()
    expect(app.page.locator(".thread-title")).to_have_text(["kept for later"])
    expect(app.page.locator(".message .body")).to_have_text(["kept for later", "kept for later"])
    app.page.unroute(re.compile(r".*/api/.*"))
    expect(app.page.locator("#offline")).to_be_hidden(timeout=TIMEOUT_MS)  # the feed reconnects by itself


def test_chats_an_older_release_kept_in_the_browser_move_to_the_server(app, server):
    app.page.goto(f"{server.url}/health")  # this origin, before the app has opened its database
    app.page.evaluate("""async () => {
        const db = await new Promise((resolve, reject) => {
            const request = indexedDB.open("rill", 1);
            request.onupgradeneeded = () => {
                request.result.createObjectStore("threads", { keyPath: "id" });
                request.result.createObjectStore("messages", { keyPath: "id" }).createIndex("threadId", "threadId");
            };
            request.onsuccess = () => resolve(request.result);
            request.onerror = () => reject(request.error);
        });
        const tx = db.transaction(["threads", "messages"], "readwrite");
        const now = new Date().toISOString();
        tx.objectStore("threads").put({ id: "t-old", title: "From 0.1.0", createdAt: now, updatedAt: now });
        tx.objectStore("messages").put({ id: "m1", threadId: "t-old", seq: 0, role: "user", content: "old question", status: "complete" });
        tx.objectStore("messages").put({ id: "m2", threadId: "t-old", seq: 1, role: "assistant", content: "old answer", status: "complete" });
        await new Promise((resolve) => { tx.oncomplete = resolve; });
        db.close();
    }""")
    app.open()
    expect(app.page.locator(".thread-title")).to_have_text(["From 0.1.0"])
    expect(app.page.locator(".message .body")).to_have_text(["old question", "old answer"])
    assert [t["title"] for t in server_threads(server)] == ["From 0.1.0"]
    app.reload()  # uploaded once
    expect(app.page.locator(".thread")).to_have_count(1)


def test_without_indexeddb_the_chat_works_and_says_it_is_not_kept(open_app):
    app = open_app()
    app.page.add_init_script("Object.defineProperty(window, 'indexedDB', {value: undefined})")
    app.open(model="scripted/echo")
    expect(app.page.locator(".notice.error")).to_contain_text("cannot be kept in this browser")
    ask(app, "still works")
    expect(app.last_reply().locator(".body")).to_have_text("still works")
    expect(app.page.locator(".thread")).to_have_count(1)


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own, restartable on the same port and data."""
    port, data = free_port(), tmp_path / "data"
    started = [start_server("eventlet", tmp_path, port=port, RILL_DATA_DIR=data)]

    def restart():
        stop_server(started[-1])
        started.append(start_server("eventlet", tmp_path, port=port, RILL_DATA_DIR=data))

    yield started[0], restart
    stop_server(started[-1])


def test_two_devices_of_one_user_see_each_others_changes_at_once_also_after_a_restart(open_page, own_server):
    server, restart = own_server
    laptop, phone = open_page(server), open_page(server, width=390, height=800)
    laptop.open(model="scripted/echo")
    phone.open(model="scripted/echo")
    ask(laptop, "first words")
    within_2s = {"timeout": 2000}
    phone.page.locator("#open-sidebar").click()
    expect(thread(phone, "first words")).to_have_count(1, **within_2s)
    thread(phone, "first words").locator(".thread-open").click()
    expect(phone.page.locator(".message .body")).to_have_text(["first words", "first words"])

    question = message(laptop, "first words")  # a branch made on the laptop...
    click_action(laptop, question, "Edit message")
    question.locator("textarea").fill("second words")
    question.locator("textarea").press("Enter")
    laptop.wait_reply_done()
    wait_settled(laptop)
    expect(phone.page.locator(".message .body")).to_have_text(["second words", "second words"], **within_2s)
    expect(phone.page.locator(".from-user .branch-count")).to_have_text("2/2", **within_2s)

    click_action(laptop, message(laptop, "second words"), "Delete this message and everything below it")
    laptop.page.get_by_role("button", name="Delete", exact=True).click()
    expect(phone.page.locator(".message .body")).to_have_text(["first words", "first words"], **within_2s)

    restart()
    for device in (laptop, phone):  # each feed is back (the banner went when the server was away)
        expect(device.page.locator("#offline")).to_be_hidden(timeout=TIMEOUT_MS)
    ask(laptop, "after the restart")
    expect(phone.page.locator(".message .body").last).to_have_text("after the restart", **within_2s)
    click_action(laptop, thread(laptop, "first words"), "Delete “first words”")
    laptop.page.get_by_role("button", name="Delete", exact=True).click()
    expect(phone.page.locator(".thread")).to_have_count(0, **within_2s)
    expect(phone.page.locator(".message")).to_have_count(0, **within_2s)
