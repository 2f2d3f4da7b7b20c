"""Replies that outlive the page: a reload or a dropped network mid-reply, two tabs on one chat,
Stop from either tab, Stop with streaming off, and a plain EventSource following a turn."""
import re
import socket
import threading
import time

import pytest
import requests
from playwright.sync_api import expect

from e2e.conftest import Page

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STORY = "Write a long story about a river."


def grows_past(page, chars):
    page.wait_for_function(
        f"() => [...document.querySelectorAll('.from-assistant .body')].at(-1)?.textContent.length > {chars}")


def shown_when_it_ended(app):
    """The last reply as this page streamed it, and as it shows once read again from the server:
    the same text, so nothing was lost or shown twice."""
    app.page.wait_for_function("() => document.querySelectorAll('#messages .is-local').length === 0")
    streamed = app.streamed()[-1]
    assert streamed == app.last_reply().locator(".body").inner_text()
    return streamed


def server_reply(server, session_id, status=None):
    """The session's last reply once it has ended (and has `status`, when given)."""
    deadline = time.monotonic() + 60
    while True:
        messages = requests.get(f"{server.url}/api/chat/sessions/{session_id}", timeout=10).json()["messages"]
        last = messages[-1] if messages else {}
        if last.get("role") == "assistant" and (status is None or last.get("status") == status):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(messages)
        time.sleep(0.1)


def test_a_reload_mid_reply_continues_with_nothing_lost_or_doubled(app, server):
    app.open(temperature=0, maxTokens=160)
    app.record_streamed()
    app.send(STORY)
    grows_past(app.page, 60)
    app.reload()  # the reply is followed again from the start of its log
    expect(app.page.locator(".from-assistant.is-streaming")).to_have_count(1)
    app.wait_reply_done()
    expect(app.last_reply()).not_to_have_class(re.compile("is-stopped|is-error"))
    saved = server_reply(server, app.newest_thread_id())
    assert saved["status"] == "complete"
    shown_when_it_ended(app)


class Link:
    """A TCP relay on loopback between the browser and the server that can drop every open
    connection at once, and refuse new ones for a while: a network that goes away."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.down = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            if self.down:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop(self, seconds: float):
        self.down = True
        for s in self.open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.open.clear()
        time.sleep(seconds)
        self.down = False


def test_a_dropped_network_mid_reply_resumes(open_app, server):
    link = Link(int(server.url.rsplit(":", 1)[1]))
    app = open_app()
    app.server = type(server)(f"http://127.0.0.1:{link.port}", server.mode, server.process, server.log)
    app.open(temperature=0, maxTokens=160)
    app.record_streamed()
    app.send(STORY)
    grows_past(app.page, 40)
    link.drop(1.5)
    # the warning; on a loaded machine "Reconnected" may already stand beside it
    expect(app.page.locator(".notice.warning")).to_contain_text("reconnecting")
    app.wait_reply_done()
    assert server_reply(server, app.newest_thread_id())["status"] == "complete"
    shown_when_it_ended(app)


def test_two_tabs_follow_one_reply_and_either_may_stop_it(app, server):
    app.open(temperature=0, maxTokens=48)
    app.send("Hello!")
    app.wait_reply_done()
    other = Page(app.page.context.new_page(), server)
    other.reload()  # opens the same chat, the newest
    expect(other.page.locator(".from-assistant")).to_have_count(1)
    app.send("Name three rivers.")
    expect(other.page.locator(".from-assistant")).to_have_count(2)  # the other tab shows the new reply live
    app.wait_reply_done()
    other.wait_reply_done()
    assert other.last_reply().locator(".body").inner_text() == app.last_reply().locator(".body").inner_text()

    app.send(STORY + " Make it very long.")
    expect(other.page.locator(".from-assistant.is-streaming")).to_have_count(1)
    grows_past(other.page, 40)
    other.page.click("#stop")
    for tab in (app, other):
        expect(tab.last_reply()).to_have_class(re.compile("is-stopped"))
    saved = server_reply(server, app.newest_thread_id(), status="cancelled")
    assert saved["tokens"] < 160 and server.wait_idle(timeout=30)["active_turns"] == 0
    assert other.errors == [] and other.dialogs == []


def test_stop_with_streaming_off_cancels_on_the_server(app, server):
    app.open(stream=False, temperature=0, maxTokens=2000)
    with app.page.expect_request(re.compile(r".*/api/chat$")) as asked:
        app.send(STORY)
    turn_id = asked.value.post_data_json["turn_id"]
    time.sleep(1.0)
    with app.page.expect_request(re.compile(rf".*/api/chat/turns/{turn_id}/cancel$")):
        app.page.click("#stop")
    expect(app.last_reply()).to_have_class(re.compile("is-stopped"))
    deadline = time.monotonic() + 30
    while requests.get(f"{server.url}/health", timeout=10).json()["active_turns"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.health()["active_turns"] == 0  # stopped on the server, not after 2000 tokens


def test_a_plain_eventsource_follows_a_turn(app, server):
    app.open()
    events = app.page.evaluate("""async () => {
        await fetch("/api/chat", {method: "POST", headers: {"Content-Type": "application/json"},
            body: JSON.stringify({message: "one two three", model: "scripted/echo", turn_id: "eventsource-turn"})});
        return await new Promise((resolve) => {
            const seen = [];
            const source = new EventSource("/api/chat/turns/eventsource-turn/events");
            for (const name of ["start", "token", "done"]) {
                source.addEventListener(name, (e) => {
                    seen.push([name, e.lastEventId, JSON.parse(e.data)]);
                    if (name === "done") { source.close(); resolve(seen); }
                });
            }
        });
    }""")
    assert [(name, seq) for name, seq, _ in events] == [
        ("start", "0"), ("token", "1"), ("token", "2"), ("token", "3"), ("done", "4")]
    assert "".join(data["token"] for name, _, data in events if name == "token") == "one two three "
