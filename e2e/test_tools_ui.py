"""Tools that run, in the browser: the chat's Tools picker (off by default) chooses a real MCP
server (tests/mcp_tools.py), or one of its tools; the scripted model calls `add(2, 3)`, the call's
card shows a spinner while it runs, then the result `5` once, and the answer follows; after a
reload (also one during a call) the thread still shows each card and result once, and remembers
its tools. A server marked "ask first" runs a call only once the user approves it on the card,
also after a reload; declined, the model reads that it was not run."""
import re

import pytest
from playwright.sync_api import expect

from tests.mcp_tools import STDIO, config_file
from tests.server import start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("tools-ui")
    config = config_file(home / "mcp.json", t=STDIO, ask={**STDIO, "ask_first": True})
    srv = start_server("eventlet", home, RILL_MCP_CONFIG=config)
    yield srv
    stop_server(srv)


def choose_tools(page, *names):
    """Servers by name, or one tool of a server as `server/tool`."""
    page.click("#tools")
    for name in names:
        server, _, tool = name.partition("/")
        row = page.locator("#tools-list .tool-server-row").filter(
            has=page.locator(".tool-server-name", has_text=re.compile(f"^{server}$")))
        row.locator(".tool-choice", has_text=tool).locator("input").check() if tool else \
            row.locator(".tool-server input").check()
    page.click("#tools-dialog button[type=submit]")


def test_a_tool_call_runs_and_its_result_shows_once_before_and_after_a_reload(open_page, tools_server):
    app = open_page(tools_server)
    app.open(model="scripted/call")
    page = app.page
    expect(page.locator("#tools")).to_have_attribute("aria-pressed", "false")  # off by default
    choose_tools(page, "t")
    expect(page.locator("#tools")).to_have_attribute("aria-pressed", "true")
    app.send('t_add {"a": 2, "b": 3}')
    app.wait_reply_done()
    reply = app.last_reply()
    expect(reply.locator(".body")).to_have_text("The result is 5.")
    expect(reply.locator(".tool-call")).to_have_count(1)
    expect(reply.locator(".tool-call-name")).to_have_text("t_add")
    expect(reply.locator(".tool-call-result code")).to_have_text("5")
    app.reload()
    reply = app.last_reply()
    expect(reply.locator(".tool-call-result code")).to_have_text("5")
    expect(reply.locator(".tool-call")).to_have_count(1)
    expect(page.locator("#tools")).to_have_attribute("aria-pressed", "true")  # the thread remembers
    app.send('t_slow {"seconds": 2}')
    expect(app.last_reply().locator(".tool-call-name")).to_have_text("t_slow")
    expect(app.last_reply().locator(".tool-call-state.is-running")).to_have_text("running")
    app.reload()  # during the call
    app.wait_reply_done()
    reply = app.last_reply()
    expect(reply.locator(".body")).to_have_text("The result is waited 2.0 s.")
    expect(reply.locator(".tool-call")).to_have_count(1)
    expect(reply.locator(".tool-call-result code")).to_have_text("waited 2.0 s")
    expect(reply.locator(".tool-call-state")).to_have_text("")  # nothing runs once the reply has ended


def test_a_new_chat_starts_without_tools(open_page, tools_server):
    app = open_page(tools_server)
    app.open(model="scripted/call")
    app.page.click("#new-thread")  # the last test's chat, which keeps its tools, opened first
    expect(app.page.locator("#tools")).to_have_attribute("aria-pressed", "false")
    app.send('t_add {"a": 2, "b": 3}')
    app.wait_reply_done()
    expect(app.last_reply().locator(".body")).to_have_text("no tool t_add to call")
    expect(app.last_reply().locator(".tool-call")).to_have_count(0)


def test_one_tool_of_a_server_can_be_chosen(open_page, tools_server, artifacts):
    app = open_page(tools_server)
    app.open(model="scripted/call")
    page = app.page
    page.click("#new-thread")
    choose_tools(page, "t/add")
    page.click("#tools")
    assert page.locator("#tools-list .tool-server-row").first.locator(".tool-server input").evaluate("b => b.indeterminate")
    expect(page.locator("#tools-list .tool-server-row").nth(1).locator(".tool-server-note")).to_have_text(
        "asks you before each call")
    page.screenshot(path=artifacts / "tools-picker.png")
    page.click("#tools-dialog button[type=submit]")
    app.send('t_add {"a": 2, "b": 3}')
    app.wait_reply_done()
    expect(app.last_reply().locator(".body")).to_have_text("The result is 5.")
    app.send("t_pid {}")
    app.wait_reply_done()
    expect(app.last_reply().locator(".body")).to_have_text("no tool t_pid to call")


@pytest.mark.parametrize("transport", ["sse", "socketio"])
def test_an_ask_first_call_runs_only_when_approved_also_after_a_reload(open_page, tools_server, transport, artifacts):
    app = open_page(tools_server)
    app.open(model="scripted/call", transport=transport)
    page = app.page
    page.click("#new-thread")
    choose_tools(page, "ask")
    app.send('ask_add {"a": 2, "b": 3}')
    card = app.last_reply().locator(".tool-call")
    expect(card.locator(".tool-call-state")).to_have_text("waiting for your approval")
    expect(card.locator(".tool-call-result")).to_be_hidden()
    app.reload()  # the call still waits, and asks again
    card = app.last_reply().locator(".tool-call")
    expect(card.locator(".tool-call-approval")).to_be_visible()
    page.screenshot(path=artifacts / f"tool-approval-{transport}.png")
    card.get_by_role("button", name="Run", exact=True).click()
    app.wait_reply_done()
    expect(app.last_reply().locator(".body")).to_have_text("The result is 5.")
    expect(card.locator(".tool-call-result code")).to_have_text("5")
    expect(card.locator(".tool-call-approval")).to_be_hidden()

    app.send('ask_add {"a": 1, "b": 1}')
    card = app.last_reply().locator(".tool-call")
    card.get_by_role("button", name="Don’t run").click()
    app.wait_reply_done()
    declined = "the user did not approve this call; it was not run"
    expect(app.last_reply().locator(".body")).to_have_text(f"The result is {declined}.")
    expect(card.locator(".tool-call-result code")).to_have_text(declined)
