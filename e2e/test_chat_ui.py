"""Chatting in the browser: streaming, stopping, transports, errors, keyboard and small screens."""
import re
import time

import pytest
import requests
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Records every state of the last reply and every announcement while a reply streams.
RECORD = """() => {
    window.__frames = [];
    window.__announced = [];
    const messages = document.getElementById("messages");
    new MutationObserver(() => {
        const item = [...messages.querySelectorAll(".from-assistant")].at(-1);
        if (!item) return;
        window.__frames.push({
            length: item.querySelector(".body").textContent.length,
            waiting: item.classList.contains("is-waiting"),
            streaming: item.classList.contains("is-streaming"),
            stats: item.querySelector(".stats").textContent,
        });
    }).observe(messages, {subtree: true, childList: true, characterData: true, attributes: true});
    const status = document.getElementById("status");
    new MutationObserver(() => status.textContent && window.__announced.push(status.textContent))
        .observe(status, {childList: true, characterData: true, subtree: true});
}"""

LONG_STORY = "Write a very long story about a river."


def reply_longer_than(app, chars):
    app.page.wait_for_function(
        f"() => [...document.querySelectorAll('.from-assistant .body')].at(-1)?.textContent.length > {chars}")


def session_messages(server, session_id, count):
    """The session's messages once it has `count` (a turn is saved just after it is released)."""
    deadline = time.monotonic() + 30
    while True:
        messages = requests.get(f"{server.url}/api/chat/sessions/{session_id}", timeout=10).json()["messages"]
        if len(messages) >= count or time.monotonic() > deadline:
            return messages
        time.sleep(0.05)


def assert_engine_idle(server):
    health = server.wait_idle(timeout=30)
    assert health["active_turns"] == 0
    assert not any(e["busy"] or e["queued"] for e in health["engine"].values())


def test_reply_streams_token_by_token_with_live_stats(app, artifacts):
    app.open(temperature=0, maxTokens=48)
    app.page.screenshot(path=artifacts / "empty.png")
    app.page.evaluate(RECORD)
    app.send("Write a short poem about the sea.")
    reply_longer_than(app, 30)
    app.page.screenshot(path=artifacts / "streaming.png")
    app.wait_reply_done()

    frames = app.page.evaluate("window.__frames")
    streaming = [f for f in frames if f["streaming"]]
    assert streaming[0]["waiting"] and streaming[0]["length"] == 0  # the typing indicator came first
    lengths = sorted({f["length"] for f in streaming if f["length"]})
    final = len(app.last_reply().locator(".body").text_content())
    assert len([n for n in lengths if n < final]) >= 5, lengths  # many states before the end
    assert any(re.fullmatch(r"[\d.]+ tok/s", f["stats"]) for f in streaming)  # live rate
    stats = app.last_reply().locator(".stats").inner_text()
    assert re.fullmatch(r"\d+ tokens · [\d.]+ m?s to first token · [\d.]+ tok/s · [\d.]+ m?s", stats), stats
    # Announced politely once when the reply starts and once when it ends, never per token.
    expect(app.page.locator("#status")).to_have_text("Reply finished.")
    assert app.page.evaluate("window.__announced") == ["Rill is replying.", "Reply finished."]
    assert app.page.get_attribute("#status", "aria-live") == "polite"


def test_stop_keeps_the_partial_reply_and_cancels_the_turn_on_the_server(app, server):
    app.open(temperature=0, maxTokens=2000)
    with app.page.expect_response("**/api/chat/stream") as response:
        app.send(LONG_STORY)
    session_id = response.value.headers["x-session-id"]
    reply_longer_than(app, 40)
    with app.page.expect_request(re.compile(r".*/api/chat/turns/[\w-]+/cancel$")) as cancel:
        app.page.click("#stop")
    assert cancel.value.method == "POST"  # besides closing the stream

    reply = app.last_reply()
    expect(reply).to_have_class(re.compile("is-stopped"))
    expect(reply.locator(".stats")).to_contain_text("Stopped")
    assert len(reply.locator(".body").text_content()) > 40  # the partial reply stays
    expect(app.page.locator("#prompt")).to_be_focused()
    assert_engine_idle(server)
    last = session_messages(server, session_id, 2)[-1]
    assert last["role"] == "assistant" and last["status"] == "cancelled" and last["content"]
    assert app.newest_thread_id() == session_id


def test_socketio_transport_streams_and_escape_stops(app, server):
    sockets, requests_made = [], []
    app.page.on("websocket", lambda ws: sockets.append(ws.url))
    app.page.on("request", lambda r: requests_made.append(r.url))
    app.open(transport="socketio", temperature=0, maxTokens=2000)
    app.send(LONG_STORY)
    reply_longer_than(app, 40)
    app.page.keyboard.press("Escape")
    expect(app.last_reply()).to_have_class(re.compile("is-stopped"))

    # Asked at once: it waits for the stopped turn to end on the server (one turn per connection).
    app.send("Now write a very long story about a mountain.")  # long: it must still run when stopped
    reply_longer_than(app, 0)
    app.page.keyboard.press("Escape")
    expect(app.page.locator(".from-assistant.is-stopped")).to_have_count(2)
    assert_engine_idle(server)

    session_id = app.newest_thread_id()
    messages = session_messages(server, session_id, 4)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    assert [m["status"] for m in messages[1::2]] == ["cancelled", "cancelled"]
    assert any("/socket.io/" in url for url in sockets)
    assert not any("/api/chat" in url for url in requests_made)


def test_streaming_off_asks_once_and_shows_the_whole_reply(app, server, artifacts):
    app.open()
    app.page.click("#open-settings")
    dialog = app.page.locator("#settings")
    expect(dialog).to_be_visible()
    models = dialog.locator("select[name=model] option").all_inner_texts()
    assert "scripted/echo" in models and any(m.startswith("Server default (local/") for m in models)
    app.page.screenshot(path=artifacts / "settings.png")
    dialog.get_by_role("switch", name="Stream responses").uncheck()
    dialog.locator("select[name=model]").select_option("scripted/echo")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(app.page.locator("#model-name")).to_have_text("scripted/echo")

    posts = []
    app.page.on("request", lambda r: r.method == "POST" and posts.append(r.url.removeprefix(server.url)))
    app.page.evaluate(RECORD)
    app.send("all at once please")
    app.wait_reply_done()
    assert posts == ["/api/chat"]
    expect(app.last_reply().locator(".body")).to_have_text("all at once please")
    assert len({f["length"] for f in app.page.evaluate("window.__frames") if f["length"]}) == 1  # all at once
    expect(app.last_reply().locator(".stats")).to_contain_text("4 tokens")


def test_theme_and_settings_persist(app, artifacts):
    app.open(model="scripted/long")
    app.page.click("#open-settings")
    dialog = app.page.locator("#settings")
    dialog.get_by_label("Dark").check()
    dialog.get_by_label("Socket.IO").check()
    dialog.locator("textarea[name=system]").fill("Be brief.")
    dialog.locator("input[name=maxTokens]").fill("100")
    dialog.locator("input[name=temperature]").fill("0.3")
    dialog.get_by_role("button", name="Save").click()
    expect(app.page.locator("html")).to_have_attribute("data-theme", "dark")

    app.reload()
    expect(app.page.locator("html")).to_have_attribute("data-theme", "dark")
    app.page.click("#open-settings")
    assert dialog.get_by_label("Socket.IO").is_checked()
    assert dialog.locator("textarea[name=system]").input_value() == "Be brief."
    assert dialog.locator("input[name=maxTokens]").input_value() == "100"
    assert dialog.locator("input[name=temperature]").input_value() == "0.3"
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()  # the page behind a modal dialog takes no input
    expect(app.page.locator("#open-settings")).to_be_focused()  # given back to its opener, then typing
    app.send("60")
    expect(app.page.locator(".from-user")).to_have_count(1)
    app.wait_reply_done()
    expect(app.last_reply().locator(".code-block")).to_have_count(1)
    app.page.screenshot(path=artifacts / "finished-dark.png")


def test_finished_reply_renders_markdown_with_highlighted_code(app, artifacts):
    app.open(model="scripted/long", theme="light")
    app.send("60")
    app.wait_reply_done()
    reply = app.last_reply()
    expect(reply.locator("h2").first).to_have_text("Section 0")
    expect(reply.locator("ul > li")).to_have_count(3)
    code = reply.locator(".code-block")
    expect(code.locator(".code-head span")).to_have_text("python")
    expect(code.locator(".hljs-keyword").first).to_have_text("def")
    expect(reply.locator(".stats")).to_contain_text("60 tokens")
    app.page.screenshot(path=artifacts / "finished-code.png")


def test_copy_buttons_copy_the_code_and_the_message(open_app):
    app = open_app(permissions=["clipboard-read", "clipboard-write"])
    app.open(model="scripted/long")
    app.send("60")
    app.wait_reply_done()
    reply = app.last_reply()
    reply.locator(".code-copy").click()
    expect(reply.locator(".code-copy")).to_have_text("Copied")
    clipboard = app.page.evaluate("navigator.clipboard.readText()")
    assert clipboard == reply.locator("code.hljs").text_content()
    assert clipboard.startswith("def flow(n):\n")
    reply.get_by_role("button", name="Copy message").click()
    assert app.page.evaluate("navigator.clipboard.readText()").startswith("## Section 0\n\nRivers **carry**")


def test_unreachable_server_shows_an_error_and_retry_asks_again(app, artifacts):
    app.open(model="scripted/echo")
    app.page.route("**/api/chat/stream", lambda route: route.abort("connectionrefused"))
    app.send("hello again")
    error = app.last_reply().locator(".error-box")
    expect(error).to_contain_text("Could not reach the server")
    expect(app.page.locator("#status")).to_contain_text("The reply failed")
    app.page.screenshot(path=artifacts / "error.png")

    app.page.unroute("**/api/chat/stream")
    error.get_by_role("button", name="Retry").click()
    app.wait_reply_done()
    expect(app.last_reply().locator(".body")).to_have_text("hello again")
    expect(app.page.locator(".error-box")).to_have_count(0)
    expect(app.page.locator(".from-user")).to_have_count(1)  # asked again, not repeated


def test_model_failure_mid_reply_is_reported(app):
    app.open(model="scripted/fail")
    app.send("go")
    expect(app.last_reply().locator(".error-box")).to_contain_text("scripted failure in the middle of a reply")
    expect(app.last_reply().get_by_role("button", name="Retry")).to_be_visible()


def tab_to(page, selector, backwards=False):
    for _ in range(60):
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
    raise AssertionError(f"{selector} cannot be reached with the keyboard")


def test_keyboard_only(app):
    app.open(model="scripted/echo")
    page = app.page
    expect(page.locator("#prompt")).to_be_focused()  # a new chat starts in the message box
    tab_to(page, ".skip-link", backwards=True)
    page.keyboard.press("Enter")
    expect(page.locator("#prompt")).to_be_focused()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#prompt") == "first line\nsecond line"
    page.keyboard.press("Enter")
    app.wait_reply_done()
    expect(page.locator(".from-user .body")).to_have_text("first line\nsecond line")
    expect(app.last_reply().locator(".body")).to_have_text("first line second line")
    expect(page.locator("#prompt")).to_have_value("")

    # The settings dialog, by keyboard alone, with a visible focus ring.
    tab_to(page, "#open-settings", backwards=True)
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    expect(page.locator("#settings")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#settings")).to_be_hidden()
    expect(page.locator("#open-settings")).to_be_focused()


def test_auto_scroll_follows_only_while_at_the_bottom(app):
    app.open(model="scripted/long")
    conversation = app.page.locator("#conversation")
    app.send("1500")
    app.page.wait_for_function("() => { const c = document.getElementById('conversation');"
                               " return c.scrollHeight > 3 * c.clientHeight; }")
    at_bottom = "c => c.scrollHeight - c.scrollTop - c.clientHeight < 30"
    assert conversation.evaluate(at_bottom)  # followed the stream so far
    conversation.hover()
    app.page.mouse.wheel(0, -600)
    app.page.wait_for_timeout(400)
    top = conversation.evaluate("c => c.scrollTop")
    app.page.wait_for_timeout(400)
    assert not conversation.evaluate(at_bottom)
    assert conversation.evaluate("c => c.scrollTop") == top  # the reader stays where they went
    expect(app.page.locator("#jump")).to_be_visible()
    app.page.click("#jump")
    app.page.wait_for_timeout(200)
    assert conversation.evaluate(at_bottom)
    app.wait_reply_done()


def test_usable_at_375px(open_app, artifacts):
    app = open_app(width=375, height=740)
    app.open(model="scripted/long")
    page = app.page
    expect(page.locator("#sidebar")).to_be_hidden()
    app.send("60")
    app.wait_reply_done()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.evaluate("(() => { const c = document.getElementById('conversation');"
                         " return c.scrollWidth <= c.clientWidth; })()")
    box = page.locator("#composer").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375
    page.screenshot(path=artifacts / "mobile.png")

    page.click("#open-sidebar")
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator("#new-thread")).to_be_focused()
    expect(page.locator(".thread")).to_have_count(1)
    page.wait_for_function("() => getComputedStyle(document.getElementById('sidebar')).transform === 'none'")
    page.screenshot(path=artifacts / "mobile-sidebar.png")
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator("#open-sidebar")).to_be_focused()
