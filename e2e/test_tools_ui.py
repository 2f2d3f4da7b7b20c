"""Tools that run, in the browser: the chat's Tools picker (off by default) chooses a real MCP
server (tests/mcp_tools.py); the scripted model calls `add(2, 3)`, the call's card shows the result
`5` once and the answer follows; after a reload (also one during a call) the thread still shows
each card and result once, and remembers its tools."""
import json
import sys

import pytest
from playwright.sync_api import expect

from tests.server import ROOT, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("tools-ui")
    config = home / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"t": {"command": sys.executable, "args": ["-m", "tests.mcp_tools"],
                                                      "cwd": str(ROOT)}}}))
    srv = start_server("eventlet", home, RILL_MCP_CONFIG=config)
    yield srv
    stop_server(srv)


def choose_tools(page, *names):
    page.click("#tools")
    for name in names:
        page.locator("#tools-list label", has_text=name).locator("input").check()
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
    app.reload()  # during the call
    app.wait_reply_done()
    reply = app.last_reply()
    expect(reply.locator(".body")).to_have_text("The result is waited 2.0 s.")
    expect(reply.locator(".tool-call")).to_have_count(1)
    expect(reply.locator(".tool-call-result code")).to_have_text("waited 2.0 s")


def test_a_new_chat_starts_without_tools(open_page, tools_server):
    app = open_page(tools_server)
    app.open(model="scripted/call")
    app.page.click("#new-thread")  # the last test's chat, which keeps its tools, opened first
    expect(app.page.locator("#tools")).to_have_attribute("aria-pressed", "false")
    app.send('t_add {"a": 2, "b": 3}')
    app.wait_reply_done()
    expect(app.last_reply().locator(".body")).to_have_text("no tool t_add to call")
    expect(app.last_reply().locator(".tool-call")).to_have_count(0)
