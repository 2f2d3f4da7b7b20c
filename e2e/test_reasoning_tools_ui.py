"""Thinking and tool calls in the chat: the folding thinking block, tool call cards filling in,
both kept on the server as parts of the reply, followed again after a dropped stream without a
piece lost or doubled, and shown as text whatever the model wrote. Driven by the scripted models `think` and `tools`."""
import json
import re

import pytest
import requests
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# tests/scripted.py: what the scripted models say.
THINK_REASONING = "Two and two make four."
THINK_ANSWER = "The answer is 4."
TOOLS_REASONING = "I should call the tools."
WEATHER_ARGUMENTS = {"city": "Paris", "n": 0}


def cut_stream_after(page, last_seq):
    """The chat stream's connection drops after event `last_seq` (the real server's events up
    to there), so the page shows that state and then follows the turn again: that request
    waits in the returned list until the test lets it through with continue_()."""
    held = []

    def cut(route):
        events = route.fetch().text().split("\n\n")
        seqs = [re.search(r"^id: (\d+)$", event, re.M) for event in events]
        kept = [e for e, seq in zip(events, seqs) if seq and int(seq.group(1)) <= last_seq]
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body="\n\n".join(kept) + "\n\n")

    page.route("**/api/chat/stream", cut)
    page.route("**/api/chat/turns/*/events", lambda route: held.append(route))
    return held


def release(page, held):
    for _ in range(500):  # 10 s for the page to ask
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the page did not follow the turn after the cut"
    held.pop().continue_()


def saved_messages(app):
    """The open chat's path as the server keeps it."""
    url = f"{app.server.url}/api/threads/{app.newest_thread_id()}/path"
    return requests.get(url, timeout=10).json()["messages"]


def pretty(arguments):
    return json.dumps(arguments, indent=2)


def test_thinking_streams_open_then_folds_when_the_answer_begins(app):
    app.open(model="scripted/think")
    held = cut_stream_after(app.page, 1)  # start, then the first thinking piece
    app.send("What is two and two?")
    reply = app.last_reply()
    thinking = reply.locator(".thinking")
    # Open while the model thinks, with what has come so far, before any answer.
    expect(thinking).to_have_attribute("open", "")
    expect(thinking.locator(".thinking-text")).to_have_text("Two and two")
    expect(reply).not_to_have_class(re.compile("is-waiting"))
    assert reply.locator(".body").inner_text() == ""

    release(app.page, held)  # the rest: more thinking, then the answer
    app.wait_reply_done()
    expect(reply.locator(".body")).to_have_text(THINK_ANSWER)
    assert "four" not in reply.locator(".body").inner_text()  # the thinking is not in the answer
    expect(thinking).not_to_have_attribute("open", re.compile(".*"))  # folded once the answer began
    expect(thinking.locator("summary")).to_have_text("Thinking")
    expect(thinking.locator(".thinking-text")).to_be_hidden()

    thinking.locator("summary").click()  # the reader opens it...
    expect(thinking.locator(".thinking-text")).to_be_visible()
    expect(thinking.locator(".thinking-text")).to_have_text(THINK_REASONING)
    thinking.locator("summary").click()  # ...and closes it again
    expect(thinking.locator(".thinking-text")).to_be_hidden()


def test_tool_call_card_fills_in_and_shows_json_once_complete(app):
    app.open(model="scripted/tools")
    held = cut_stream_after(app.page, 5)  # thinking, the call's start and two argument fragments
    app.send("What is the weather in Paris?")
    reply = app.last_reply()
    card = reply.locator(".tool-call")
    expect(card.locator(".tool-call-name")).to_have_text("get_weather")
    expect(card.locator(".tool-call-args")).to_have_text('{"city": "Par')  # raw, cut mid-JSON
    expect(card).not_to_have_class(re.compile("is-done"))
    expect(reply.locator(".thinking")).not_to_have_attribute("open", re.compile(".*"))  # folded: the call began

    release(app.page, held)
    app.wait_reply_done()
    expect(card).to_have_count(1)
    expect(card).to_have_class(re.compile("is-done"))
    expect(card.locator(".tool-call-args")).to_have_text(pretty(WEATHER_ARGUMENTS))
    expect(reply.locator(".thinking-text")).to_have_text(TOOLS_REASONING)
    assert reply.locator(".body").inner_text() == ""  # no answer text, and no "No text."


def test_thinking_and_tool_calls_over_socketio(app):
    app.open(model="scripted/tools", transport="socketio")
    app.send("What is the weather in Paris?")
    app.wait_reply_done()
    reply = app.last_reply()
    expect(reply.locator(".tool-call-name")).to_have_text("get_weather")
    expect(reply.locator(".tool-call-args")).to_have_text(pretty(WEATHER_ARGUMENTS))
    expect(reply.locator(".thinking")).not_to_have_attribute("open", re.compile(".*"))
    expect(reply.locator(".thinking-text")).to_have_text(TOOLS_REASONING)


def test_thinking_and_tool_calls_survive_a_reload(app):
    app.open(model="scripted/think")
    app.send("What is two and two?")
    app.wait_reply_done()
    app.page.evaluate("""() => {  // the next reply from the tools model, same chat
        const settings = JSON.parse(localStorage.getItem("rill.settings"));
        localStorage.setItem("rill.settings", JSON.stringify({...settings, model: "scripted/tools"}));
    }""")
    app.reload()
    app.send("And the weather?")
    app.wait_reply_done()

    saved = saved_messages(app)
    assert [m["role"] for m in saved] == ["user", "assistant", "user", "assistant"]
    assert saved[1]["parts"] == [{"type": "reasoning", "text": THINK_REASONING}, {"type": "text", "text": THINK_ANSWER}]
    assert saved[3]["parts"] == [{"type": "reasoning", "text": TOOLS_REASONING},
                                 {"type": "tool_call", "id": "call_0_get_weather", "name": "get_weather",
                                  "arguments": json.dumps(WEATHER_ARGUMENTS)}]

    app.reload()
    replies = app.page.locator(".from-assistant")
    expect(replies).to_have_count(2)
    first, second = replies.nth(0), replies.nth(1)
    for reply, reasoning in ((first, THINK_REASONING), (second, TOOLS_REASONING)):
        thinking = reply.locator(".thinking")
        expect(thinking).to_be_visible()
        expect(thinking).not_to_have_attribute("open", re.compile(".*"))  # folded
        thinking.locator("summary").click()
        expect(thinking.locator(".thinking-text")).to_have_text(reasoning)
    expect(first.locator(".body")).to_have_text(THINK_ANSWER)
    expect(first.locator(".tool-call")).to_have_count(0)
    expect(second.locator(".tool-call-name")).to_have_text("get_weather")
    expect(second.locator(".tool-call-args")).to_have_text(pretty(WEATHER_ARGUMENTS))
    assert second.locator(".body").inner_text() == ""


HOSTILE = "<think>Plan: <b>bold</b> <img src=x onerror=window.__xss=1></think> Done"


def test_thinking_that_looks_like_html_is_shown_as_text(app):
    """The echo model repeats the <think> part, which the server streams as reasoning."""
    app.open(model="scripted/echo")
    app.send(HOSTILE)
    app.wait_reply_done()
    for _ in range(2):  # streamed, then drawn from IndexedDB after a reload
        reply = app.last_reply()
        thinking = reply.locator(".thinking-text")
        expect(thinking).to_have_text("Plan: <b>bold</b> <img src=x onerror=window.__xss=1>")
        assert thinking.locator("*").count() == 0  # text only: no element came from it
        expect(reply.locator(".body")).to_have_text("Done")
        assert app.page.evaluate("window.__xss") is None
        app.reload()
