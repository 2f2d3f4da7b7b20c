"""The MCP servers Rill reaches (rill/mcp/servers.py), against a real MCP server written with the
SDK (tests/mcp_tools.py), over stdio and Streamable HTTP: tools listed, calls answered, a timeout,
a failing tool, a long result cut, Stop, a server killed between calls, one that cannot start."""
import json
import logging
import time

import psutil
import pytest

from rill.mcp.config import HttpServer, StdioServer, load
from rill.mcp.servers import McpServers
from tests import mcp_tools
from tests.mcp_tools import http_server
from tests.server import free_port

pytestmark = pytest.mark.slow

STDIO = StdioServer(**mcp_tools.STDIO)


@pytest.fixture(scope="module")
def http_url():
    process, url = http_server(free_port())
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(params=["stdio", "http"])
def servers(request, http_url):
    config = {"t": STDIO if request.param == "stdio" else HttpServer(url=http_url),
              "quick": STDIO.model_copy(update={"timeout_seconds": 2.0})}
    hub = McpServers(config, timeout_seconds=30, output_chars=100)
    yield hub
    hub.close()


def call(servers, server, tool, **arguments):
    return servers.call(server, tool, arguments).result()


def test_tools_are_listed_with_their_schemas_and_calls_answer(servers):
    tools, failed = servers.tools(["t"])
    assert failed == {}
    by_name = {t.qualified: t for t in tools}
    assert {"t_add", "t_slow", "t_boom", "t_long", "t_pid"} <= set(by_name)
    assert by_name["t_add"].schema["required"] == ["a", "b"] and by_name["t_add"].description == "Add two integers."
    assert call(servers, "t", "add", a=2, b=3).text == "5"


def test_a_failing_tool_and_a_long_result_are_results_the_model_can_read(servers):
    failed = call(servers, "t", "boom")
    assert failed.is_error and "boom" in failed.text
    cut = call(servers, "t", "long", characters=250)
    assert not cut.is_error and cut.text == "x" * 100 + "\n[... 150 more characters cut]"
    assert call(servers, "t", "add", a=1, b=1).text == "2"  # the server is still fine


def test_a_call_past_its_timeout_is_an_error_within_it_and_the_server_goes_on(servers):
    assert call(servers, "quick", "add", a=1, b=2).text == "3"  # started: its start-up is not the call's time
    started = time.monotonic()
    late = call(servers, "quick", "slow", seconds=60)
    assert late.is_error and late.text == "quick_slow did not answer within 2 s"
    assert time.monotonic() - started < 3
    assert call(servers, "quick", "add", a=2, b=3).text == "5"


def test_stop_ends_a_call_at_once_and_a_stdio_server_starts_again(servers):
    before = int(call(servers, "quick", "pid").text)
    running = servers.call("quick", "slow", {"seconds": 60})
    time.sleep(0.5)
    started = time.monotonic()
    running.cancel()
    stopped = running.result()
    assert stopped.is_error and stopped.text == "the call was stopped" and time.monotonic() - started < 1
    deadline = time.monotonic() + 5
    while psutil.pid_exists(before) and psutil.Process(before).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the stopped stdio server is still running"
        time.sleep(0.1)
    assert int(call(servers, "quick", "pid").text) != before


def test_a_server_killed_between_calls_is_started_again(servers):
    first = int(call(servers, "quick", "pid").text)
    psutil.Process(first).kill()
    time.sleep(0.3)
    again = call(servers, "quick", "add", a=2, b=3)
    if again.is_error:  # the first call after the death finds the pipe closed, and restarts it
        again = call(servers, "quick", "add", a=2, b=3)
    assert again.text == "5" and int(call(servers, "quick", "pid").text) != first


def test_a_server_that_cannot_start_is_said_not_raised():
    hub = McpServers({"gone": StdioServer(command="/no/such/mcp-server")}, timeout_seconds=5)
    try:
        tools, failed = hub.tools(["gone"])
        assert tools == [] and "could not be reached" in failed["gone"]
        result = call(hub, "gone", "add", a=1, b=2)
        assert result.is_error and "gone_add failed" in result.text
    finally:
        hub.close()


@pytest.mark.parametrize("content,words", [
    ("{", "Expecting property name"),
    ('{"servers": {}}', "mcpServers: Field required"),
    ('{"mcpServers": {"a b": {"command": "x"}}}', "server name 'a b'"),
    ('{"mcpServers": {"x": {"command": "x", "shell": true}}}', "shell: Extra inputs are not permitted"),
    ('{"mcpServers": {"x": {"command": "x", "ask_first": "yes"}}}', "ask_first: Input should be a valid boolean"),
    ('{"mcpServers": {"x": {"url": "ftp://host"}}}', "url: String should match pattern"),
])
def test_a_config_rill_cannot_use_stops_the_start_with_why(tmp_path, content, words):
    path = tmp_path / "mcp.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as stopped:
        load(str(path))
    assert words in str(stopped.value) and str(path) in str(stopped.value)


def test_the_common_config_shape_loads(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "files": {"command": "python", "args": ["-m", "x"], "env": {"A": "1"}, "cwd": "/tmp"},
        "web": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer k"}, "timeout_seconds": 5}}}))
    servers = load(str(path))
    assert servers["files"].args == ["-m", "x"] and servers["files"].env == {"A": "1"}
    assert isinstance(servers["web"], HttpServer) and servers["web"].timeout_seconds == 5


def test_an_http_server_with_headers_is_reached_through_its_own_client(http_url):
    """Headers (an API key) need an httpx2 client of Rill's making: the transport built for them."""
    hub = McpServers({"h": HttpServer(url=http_url, headers={"Authorization": "Bearer test-key"})})
    try:
        assert call(hub, "h", "add", a=2, b=3).text == "5"
    finally:
        hub.close()


def test_a_stdio_servers_stderr_goes_to_the_log_under_its_name(caplog):
    hub = McpServers({"t": STDIO}, timeout_seconds=30)
    try:
        with caplog.at_level(logging.INFO, logger="rill.mcp.servers"):
            assert call(hub, "t", "complain", text="the disk is full\nsecond line").text == "said"
            deadline = time.monotonic() + 5
            while "MCP server t: second line" not in caplog.messages:
                assert time.monotonic() < deadline, caplog.messages
                time.sleep(0.05)
        assert "MCP server t: the disk is full" in caplog.messages
    finally:
        hub.close()
