"""A real MCP server for the tests, made with the SDK: `python -m tests.mcp_tools` speaks stdio,
`python -m tests.mcp_tools PORT` Streamable HTTP on 127.0.0.1 (http_server() starts one)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

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
def complain(text: str) -> str:
    """Write this line to stderr (which Rill logs)."""
    print(text, file=sys.stderr, flush=True)
    return "said"


@app.tool()
def pid() -> int:
    """The server's process id (a restart changes it)."""
    return os.getpid()


STDIO = {"command": sys.executable, "args": ["-m", "tests.mcp_tools"], "cwd": str(Path(__file__).resolve().parent.parent)}


def config_file(path: Path, **servers: dict) -> Path:
    """A RILL_MCP_CONFIG file of these servers (each as its `mcpServers` entry, e.g. STDIO)."""
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def http_server(port: int) -> tuple[subprocess.Popen, str]:
    """This server over Streamable HTTP in a process of its own, once it answers: (process, URL)."""
    import requests

    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, "-m", "tests.mcp_tools", str(port)], cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url, timeout=1)
            return process, url
        except requests.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the HTTP MCP server did not start")
            time.sleep(0.2)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        app.run()
