"""The configured MCP servers, reached through the `mcp` SDK. The SDK is asyncio: it runs on a
loop of its own in an OS thread, never on eventlet's hub; callers get results through a Channel
(runtime.py), so a green thread waits without stalling the others, and a slow tool stalls nobody.

A server starts with its first use, stays connected, and starts again after it died; a stdio
server whose call was stopped is restarted (a server that ignores the cancel keeps no stale
work). Results are text, cut at `output_chars` with a visible mark; every failure (a crash, a
timeout, an unknown tool, a server that cannot start) is an error result, never an exception. A
stdio server's stderr goes to Rill's log, a line at a time under the server's name."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from ..refusals import Refused
from ..runtime import Channel, os_thread, real_os, real_threading
from .config import HttpServer, Server

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tool:
    server: str
    name: str  # the server's own name for it
    description: str
    schema: dict  # JSON Schema of its arguments

    @property
    def qualified(self) -> str:
        """What the model calls it: `server_tool` (names from two servers never collide)."""
        return f"{self.server}_{self.name}"


@dataclass(frozen=True)
class ToolOutput:
    text: str
    is_error: bool = False


class Connection:
    """One server's session, held open by a task of its own (the SDK's task groups must be left
    by the task that entered them)."""

    def __init__(self, name: str, server: Server):
        self.name, self.server = name, server
        self.tools: list[Tool] | None = None
        self._ready: asyncio.Future | None = None
        self._stop: asyncio.Event | None = None

    async def session(self):
        """The connected client: connects (again) when there is none."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            asyncio.create_task(self._hold(self._ready, self._stop))
        return await asyncio.shield(self._ready)

    async def _hold(self, ready: asyncio.Future, stop: asyncio.Event) -> None:
        from mcp import Client

        stderr = StderrLog(self.name) if self.stdio else None
        try:
            async with Client(self._target(stderr)) as client:
                ready.set_result(client)
                await stop.wait()
        except BaseException as err:  # noqa: BLE001 - the server could not start, or died: said to its callers
            if not ready.done():
                ready.set_exception(RuntimeError(f"MCP server {self.name!r} could not be reached: {reason(err)}"))
            if isinstance(err, asyncio.CancelledError):
                raise
        finally:
            if stderr is not None:
                stderr.close()
            if self._ready is ready:
                self._ready = None  # ended, or never started: the next use connects again

    def _target(self, stderr: StderrLog | None):
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        if isinstance(self.server, HttpServer):
            return self.server.url if not self.server.headers else http_transport(self.server)
        return stdio_client(StdioServerParameters(command=self.server.command, args=self.server.args,
                                                  env=self.server.env or None, cwd=self.server.cwd), errlog=stderr.file)

    def restart(self) -> None:
        """Close the session (a stdio server's process ends); the next use starts it again."""
        if self._stop is not None:
            self._stop.set()
        self._ready = None
        self.tools = None

    @property
    def stdio(self) -> bool:
        return not isinstance(self.server, HttpServer)


class StderrLog:
    """A stdio server's stderr: a pipe read on the servers' loop, each line logged under the
    server's name (the child keeps its end open until it exits; then the reading ends)."""

    def __init__(self, name: str):
        self.name = name
        self.read, write = real_os.pipe()
        real_os.set_blocking(self.read, False)
        self.file = open(write, "w")  # given to the child as its stderr
        self.partial = b""
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.read, self._drain)

    def _drain(self) -> None:
        try:
            data = real_os.read(self.read, 65536)
        except BlockingIOError:
            return
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop() if data else b""
        for line in filter(None, (raw.decode(errors="replace").rstrip() for raw in lines)):
            log.info("MCP server %s: %s", self.name, line[:2000])
        if not data:  # every writer has gone
            self.loop.remove_reader(self.read)
            real_os.close(self.read)

    def close(self) -> None:
        self.file.close()


def http_transport(server: HttpServer):
    """Streamable HTTP with the configured headers (an API key, say)."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    @contextlib.asynccontextmanager
    async def transport():
        async with httpx2.AsyncClient(headers=server.headers, timeout=httpx2.Timeout(30, read=300)) as http:
            async with streamable_http_client(server.url, http_client=http) as streams:
                yield streams

    return transport()


def reason(err: BaseException) -> str:
    """An exception group (anyio's) as the first real error in it, in words."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return str(err) or type(err).__name__


class Call:
    """A running call: its result arrives on `channel`; cancel() stops it."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.channel = Channel()
        self.loop = loop
        self.task: asyncio.Task | None = None  # set on the loop
        self.cancelled = False

    def result(self) -> ToolOutput:
        return self.channel.get()

    def cancel(self) -> None:
        def stop() -> None:
            self.cancelled = True
            if self.task is not None:
                self.task.cancel()

        self.loop.call_soon_threadsafe(stop)


class McpServers:
    def __init__(self, config: dict[str, Server], timeout_seconds: float = 30.0, output_chars: int = 8000):
        self.config = config
        self.timeout_seconds = timeout_seconds
        self.output_chars = output_chars
        self.connections = {name: Connection(name, server) for name, server in config.items()}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = real_threading.Lock()

    def check(self, entries) -> None:
        """Each entry a configured server's name (or `server/tool`), or a refusal naming the first that is not."""
        for n, entry in enumerate(entries):
            if entry.partition("/")[0] not in self.config:
                raise Refused("invalid_request_error", f"mcp_servers.{n}: no MCP server {entry.partition('/')[0]!r} "
                                                       f"(configured: {', '.join(self.config) or 'none; see RILL_MCP_CONFIG'})")

    def offered(self, entries, remembered: bool = False) -> list[Tool]:
        """The tools these entries offer: a server's name, all its tools; `server/tool`, that one.
        Refused when a server cannot be reached, or a tool is not there (unless `remembered`: a
        thread's earlier choice, whose tool may have gone since)."""
        self.check(entries)
        wanted: dict[str, set[str] | None] = {}  # server -> its tools chosen (None: all)
        for entry in entries:
            server, _, tool = entry.partition("/")
            if not tool:
                wanted[server] = None
            elif wanted.get(server, set()) is not None:
                wanted.setdefault(server, set()).add(tool)
        tools, failed = self.tools(list(wanted))
        if failed:
            raise Refused("mcp_server_unavailable", "; ".join(f"MCP server {name!r}: {why}" for name, why in failed.items()))
        for n, entry in enumerate(entries):
            server, _, tool = entry.partition("/")
            if tool and not remembered and not any(t.server == server and t.name == tool for t in tools):
                raise Refused("invalid_request_error", f"mcp_servers.{n}: MCP server {server!r} has no tool {tool!r} "
                              f"(it has: {', '.join(t.name for t in tools if t.server == server) or 'none'})")
        return [t for t in tools if wanted[t.server] is None or t.name in wanted[t.server]]

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._started:
            if self.loop is None:
                ready = real_threading.Event()

                def run() -> None:
                    self.loop = asyncio.new_event_loop()
                    ready.set()
                    self.loop.run_forever()

                os_thread(run, "rill-mcp")
                ready.wait()
        return self.loop

    def _run(self, coroutine, deliver, call: Call | None = None) -> None:
        """Run a coroutine on the servers' loop; deliver(task) is called there when it is done.
        (No concurrent.futures.Future: its lock would be green under eventlet, and shared by two threads.)"""
        def begin() -> None:
            task = asyncio.ensure_future(coroutine)
            task.add_done_callback(deliver)
            if call is not None:
                call.task = task
                if call.cancelled:
                    task.cancel()

        self._start().call_soon_threadsafe(begin)

    def wait(self, coroutine):
        """Its result, waited for without blocking the hub (a green thread yields meanwhile)."""
        channel = Channel()
        self._run(coroutine, lambda task: channel.put((task.exception(), None) if task.exception() else
                                                      (None, task.result())))
        error, result = channel.get()
        if error is not None:
            raise error
        return result

    def tools(self, names: list[str]) -> tuple[list[Tool], dict[str, str]]:
        """The tools of these servers, and why each server that could not list them failed."""
        return self.wait(self._tools(names))

    async def _tools(self, names: list[str]) -> tuple[list[Tool], dict[str, str]]:
        found, failed = [], {}
        for name, listed in zip(names, await asyncio.gather(*(self._list(n) for n in names), return_exceptions=True)):
            if isinstance(listed, BaseException):
                failed[name] = reason(listed)
            else:
                found += listed
        return found, failed

    async def _list(self, name: str) -> list[Tool]:
        connection = self.connections[name]
        if connection.tools is None:
            client = await asyncio.wait_for(connection.session(), self._timeout(name))
            listed = await asyncio.wait_for(client.list_tools(), self._timeout(name))
            connection.tools = [Tool(name, t.name, t.description or "", dict(t.input_schema or {}))
                                for t in listed.tools]
        return connection.tools

    def _timeout(self, name: str) -> float:
        return self.config[name].timeout_seconds or self.timeout_seconds

    def call(self, server: str, tool: str, arguments: dict) -> Call:
        call = Call(self._start())
        self._run(self._call(server, tool, arguments), lambda task: call.channel.put(
            ToolOutput("the call was stopped", True) if task.cancelled() else task.result()), call)
        return call

    async def _call(self, name: str, tool: str, arguments: dict) -> ToolOutput:
        connection = self.connections[name]
        timeout = self._timeout(name)
        try:
            client = await asyncio.wait_for(connection.session(), timeout)
            result = await asyncio.wait_for(client.call_tool(tool, arguments), timeout)
        except asyncio.TimeoutError:
            return ToolOutput(f"{name}_{tool} did not answer within {timeout:g} s", True)
        except asyncio.CancelledError:
            if connection.stdio:  # stopped mid-call: a fresh process, whatever the old one was doing
                connection.restart()
            raise
        except Exception as err:  # noqa: BLE001 - a crash, a closed pipe: the model is told, the server restarts
            connection.restart()
            return ToolOutput(f"{name}_{tool} failed: {reason(err)}", True)
        text = "\n".join(getattr(part, "text", None) or f"[{part.type} content]" for part in result.content)
        return ToolOutput(self.capped(text), bool(result.is_error))

    def capped(self, text: str) -> str:
        if len(text) <= self.output_chars:
            return text
        return f"{text[:self.output_chars]}\n[... {len(text) - self.output_chars:,} more characters cut]"

    def close(self) -> None:
        """Stop every server (on shutdown)."""
        if self.loop is None:
            return

        async def stop_all():
            for connection in self.connections.values():
                connection.restart()
            await asyncio.sleep(0.2)  # their tasks leave their sessions: stdio children end

        stopped = real_threading.Event()
        self._run(stop_all(), lambda task: stopped.set())
        stopped.wait(5)
        self.loop.call_soon_threadsafe(self.loop.stop)

