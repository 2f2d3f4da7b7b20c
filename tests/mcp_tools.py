"""A real MCP server for the tests, made with the SDK: `python -m tests.mcp_tools` speaks stdio,
`python -m tests.mcp_tools PORT` Streamable HTTP on 127.0.0.1."""
import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer

app = MCPServer("rill-test-tools")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
async def slow(seconds: float) -> str:
    """Wait this many seconds, then say so."""
    await anyio.sleep(seconds)
    return f"waited {seconds} s"


@app.tool()
def boom() -> str:
    """Always fails."""
    raise RuntimeError("boom")


@app.tool()
def long(characters: int) -> str:
    """A text this long."""
    return "x" * characters


@app.tool()
def pid() -> int:
    """The server's process id (a restart changes it)."""
    return os.getpid()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        app.run()
