"""`rill`, the terminal client: run as a real process against a real server (the scripted
provider beside the local model), in a real terminal (tmux) where it matters."""
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.mcp_tools import STDIO, config_file
from tests.server import free_port, start_server, stop_server
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow
RILL = str(Path(sys.executable).parent / "rill")
ESCAPE = "\x1b"


@pytest.fixture(scope="module")
def server(servers):
    return servers("eventlet")


@pytest.fixture
def home(tmp_path):
    """The client's config and state directories, the test's own."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state"),
            "HOME": str(tmp_path)}


def rill(args: list[str], env: dict, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RILL_")}
    return subprocess.run([RILL, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env={**environment, **env})


def reply_of(server, message: str, model: str) -> str:
    """What the server itself answers, for the same greedy request."""
    return requests.post(f"{server.url}/api/chat", json={"message": message, "model": model}, timeout=60).json()["reply"]


def last_conversation(home: dict, backend: str = "rill") -> dict:
    return json.loads((Path(home["XDG_STATE_HOME"]) / "rill" / "conversations.json").read_text())[backend]


def session_messages(server, session_id: str) -> list[dict]:
    return requests.get(f"{server.url}/api/chat/sessions/{session_id}", timeout=10).json()["messages"]


class Terminal:
    """A tmux pane running one command (no shell around it, so a Ctrl-C reaches that command
    only): keys in, screen and scrollback out, its exit status kept once it ends."""

    def __init__(self, command: list[str], env: dict, width: int = 100, height: int = 30):
        self.socket = f"rill-test-{uuid.uuid4().hex[:8]}"
        environment = [f"-e{k}={v}" for k, v in env.items()]
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), *environment, *command,
                  ";", "set-option", "remain-on-exit", "on")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def screen(self, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if escapes else []))

    def history(self) -> str:
        return self.tmux("capture-pane", "-p", "-S", "-")

    def wait_for(self, condition, timeout: float = 30, what: str = "") -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.history()
            if condition(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the terminal shows:\n{text}")
            time.sleep(0.1)

    def exit_status(self, timeout: float = 10) -> int:
        """The exit status, or minus the signal that ended it. tmux marks the pane dead when its pty
        closes, and may reap the process only much later (on a busy machine, seconds): until then
        the kernel keeps the status of the zombie, which /proc shows."""
        deadline = time.monotonic() + timeout
        while True:
            dead, status, signal, pid = self.tmux(
                "display-message", "-p", "#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}:#{pane_pid}"
            ).strip().split(":")
            if dead == "1" and (status or signal):
                return int(status) if status else -int(signal)
            if dead == "1" and (code := zombie_status(int(pid))) is not None:
                return code
            assert time.monotonic() < deadline, f"the command did not exit:\n{self.history()}"
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def zombie_status(pid: int) -> int | None:
    """An exited, not yet reaped process's exit code (minus its signal); None while it runs."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return None
    if fields[0] != "Z":  # the state; field 52 of the file (exit_code) is a waitpid status
        return None
    return os.waitstatus_to_exitcode(int(fields[49]))


@pytest.fixture
def terminal(home, server):
    opened = []

    def open_(*args: str, env: dict | None = None) -> Terminal:
        t = Terminal([RILL, *args], {**home, "RILL_URL": server.url, **(env or {})})
        opened.append(t)
        return t

    yield open_
    for t in opened:
        t.close()


def prompt_count(text: str) -> int:
    return len(re.findall(r"^›( |$)", text, re.MULTILINE))


def test_ask_writes_plain_text_to_a_pipe_and_takes_stdin_as_context(server, home):
    result = rill(["ask", "-m", "scripted/echo", "what", "is", "this?"], {**home, "RILL_URL": server.url},
                  stdin="some piped context\n")
    assert result.returncode == 0, result.stderr
    assert ESCAPE not in result.stdout and result.stderr == ""
    assert result.stdout == reply_of(server, "some piped context\n\nwhat is this?", "scripted/echo") + "\n"


def test_ask_sends_files_and_says_what_is_refused(server, home, tmp_path):
    from tests.test_files import png

    notes = tmp_path / "notes.txt"
    notes.write_text("The Aare joins the Rhine at Koblenz.\n")
    env = {**home, "RILL_URL": server.url}
    result = rill(["ask", "-m", "scripted/history", "-a", str(notes), "Where does the Aare end?"], env)
    assert result.returncode == 0, result.stderr
    assert "notes.txt:" in result.stdout and "The Aare joins the Rhine at Koblenz." in result.stdout
    piped = rill(["ask", "-m", "scripted/history", "-a", "-", "Summarise."], env, stdin="piped river notes\n")
    assert piped.returncode == 0 and "stdin.txt:" in piped.stdout and "piped river notes" in piped.stdout
    missing = rill(["ask", "-a", str(tmp_path / "gone.pdf"), "x"], env)
    assert missing.returncode == 1 and "cannot read" in missing.stderr and "gone.pdf" in missing.stderr
    image = tmp_path / "dot.png"
    image.write_bytes(png())
    refused = rill(["ask", "-m", "scripted/history", "-a", str(image), "What is it?"], env)
    assert refused.returncode == 1 and "reads text only" in refused.stderr, refused.stderr


def test_ask_stats_go_to_stderr(server, home):
    result = rill(["ask", "--stats", "-m", "scripted/echo", "a b c"], {**home, "RILL_URL": server.url})
    assert result.returncode == 0 and result.stdout.strip() == reply_of(server, "a b c", "scripted/echo").strip()
    assert re.fullmatch(r"TTFT \d+ ms · [\d.]+ tokens/s · \d+ prompt \+ 3 completion tokens · [\d.]+ s · stop\n",
                        result.stderr), result.stderr


def test_continue_and_session_pick_up_a_conversation(server, home):
    env = {**home, "RILL_URL": server.url}
    assert rill(["ask", "-m", "scripted/echo", "first"], env).returncode == 0
    session_id = last_conversation(home)["session_id"]
    assert rill(["ask", "-c", "second"], env).returncode == 0  # the model is remembered too
    assert [m["content"].strip() for m in session_messages(server, session_id)] == ["first", "first", "second", "second"]
    other = rill(["ask", "-m", "scripted/echo", "third"], env)  # no -c: a new session
    assert last_conversation(home)["session_id"] != session_id and other.returncode == 0
    assert rill(["ask", "--session", session_id, "-m", "scripted/echo", "fourth"], env).returncode == 0
    assert len(session_messages(server, session_id)) == 6


def one_line_error(result) -> str:
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("rill: "), result.stderr
    return result.stderr


def test_errors_are_one_clear_line_and_a_nonzero_status(home, tmp_path):
    down = rill(["ask", "hi"], {**home, "RILL_URL": f"http://127.0.0.1:{free_port()}"})
    assert "cannot reach Rill" in one_line_error(down)
    secret = "cli-test-secret-" + "x" * 32
    locked = start_server("eventlet", tmp_path, RILL_JWT_SECRET=secret, RILL_RATE_LIMIT="2 per minute")
    try:
        env = {**home, "RILL_URL": locked.url}
        assert "authentication failed: missing token" in one_line_error(rill(["ask", "hi"], env))
        token = rill(["token", "alice", "--ttl", "5m"], {"RILL_JWT_SECRET": secret})
        assert token.returncode == 0, token.stderr
        env["RILL_TOKEN"] = token.stdout.strip()
        for _ in range(2):
            ok = rill(["ask", "-m", "scripted/echo", "hi"], env)
            assert ok.returncode == 0 and ok.stdout.strip() == "hi", ok.stderr
        limited = one_line_error(rill(["ask", "-m", "scripted/echo", "hi"], env))
        assert re.search(r"rate limited: .*; retry in \d+ s", limited), limited
    finally:
        stop_server(locked)
    assert "no backend named 'nope'" in one_line_error(rill(["ask", "-b", "nope", "hi"], home))


def test_openai_and_anthropic_backends_against_rills_own_v1(server, home):
    config = Path(home["XDG_CONFIG_HOME"]) / "rill" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"backends:\n"
                      f"  oa: {{type: openai, url: '{server.url}/v1', model: scripted/echo}}\n"
                      f"  an: {{type: anthropic, url: '{server.url}', model: scripted/echo}}\n")
    for name in ("oa", "an"):
        result = rill(["ask", "-b", name, "--stats", "hello from", name], home)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"hello from {name}" and "completion tokens" in result.stderr
        again = rill(["ask", "-b", name, "-c", "and again"], home)
        assert again.returncode == 0 and again.stdout.strip() == "and again", again.stderr
        assert [m["content"].strip() for m in last_conversation(home, name)["messages"]] == \
            [f"hello from {name}", f"hello from {name}", "and again", "and again"]
    config.write_text("backends:\n  bad: {type: gopher, url: x}\n")
    assert "backends.bad.type" in one_line_error(rill(["ask", "-b", "bad", "hi"], home))


def test_a_dropped_connection_resumes_the_turn_without_losing_or_repeating_text(server, home):
    proxy = TcpProxy(int(server.url.rsplit(":", 1)[1]))
    try:
        process = subprocess.Popen([RILL, "ask", "-m", "scripted/long", "long 1500"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env={**os.environ, **home, "RILL_URL": proxy.url})
        deadline = time.monotonic() + 30
        while proxy.bytes_down < 4000:  # part of the reply has come
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        proxy.drop()
        out, err = process.communicate(timeout=60)
    finally:
        proxy.close()
    assert process.returncode == 0, err
    assert "connection lost; resuming from event" in err
    saved = session_messages(server, last_conversation(home)["session_id"])[-1]
    assert saved["status"] == "complete" and out == saved["content"] + "\n"


def test_chat_streams_progressively_and_ctrl_d_exits_zero(terminal):
    t = terminal("chat", "-m", "scripted/slow")
    t.wait_for(lambda s: prompt_count(s) == 1, what="the prompt")
    t.send("hi", "Enter")
    shown = t.wait_for(lambda s: "slow" in s, what="the first piece")
    assert "reply" not in shown  # the second piece is 1.5 s behind
    t.wait_for(lambda s: "slow reply" in s and prompt_count(s) == 2, what="the whole reply and a new prompt")
    t.send("C-d")
    assert t.exit_status() == 0


def test_ctrl_c_stops_the_reply_on_the_server_and_keeps_the_partial_text(terminal, server, home):
    t = terminal("chat", "-m", "scripted/long")
    t.wait_for(lambda s: prompt_count(s) == 1, what="the prompt")
    t.send("long 20000", "Enter")  # about 40 s of text
    t.wait_for(lambda s: "Section 3" in s, what="part of the reply")
    t.send("C-c")
    t.wait_for(lambda s: "(stopped)" in s and prompt_count(s) == 2, what="the prompt after Ctrl-C")
    session_id = last_conversation(home)["session_id"]
    deadline = time.monotonic() + 10
    while (saved := session_messages(server, session_id))[-1]["role"] != "assistant":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert saved[-1]["status"] == "cancelled" and "Section 3" in saved[-1]["content"]
    assert server.wait_idle()["active_turns"] == 0
    t.send("C-c")  # at the prompt: nothing to stop, a fresh prompt
    t.wait_for(lambda s: prompt_count(s) == 3, what="a fresh prompt")
    t.send("C-d")
    assert t.exit_status() == 0


@pytest.mark.parametrize("delay", [None, 0.03, 0.1], ids=["with the Enter", "30 ms after", "100 ms after"])
def test_ctrl_c_right_after_enter_stops_that_reply(terminal, server, delay):
    """Pressed with the Enter (prompt_toolkit reads both at once) or just after it, before the
    request has started: the reply must not run on."""
    t = terminal("chat", "-m", "scripted/long")
    t.wait_for(lambda s: prompt_count(s) == 1, what="the prompt")
    assert server.wait_idle()["active_turns"] == 0
    if delay is None:
        t.send("long 20000", "Enter", "C-c")  # about 40 s of text unless stopped
    else:
        t.send("long 20000", "Enter")
        time.sleep(delay)
        t.send("C-c")
    t.wait_for(lambda s: "(stopped)" in s and prompt_count(s) == 2, timeout=10, what="the prompt after Ctrl-C")
    assert server.wait_idle(timeout=5)["active_turns"] == 0  # nothing runs on on the server
    t.send("C-d")
    assert t.exit_status() == 0


def test_markdown_blocks_are_printed_once_and_code_is_highlighted(terminal, server):
    t = terminal("chat", "-m", "scripted/long")
    t.wait_for(lambda s: prompt_count(s) == 1, what="the prompt")
    t.send("long 400", "Enter")
    shown = t.wait_for(lambda s: prompt_count(s) == 2, what="the end of the reply")
    reply = reply_of(server, "long 400", "scripted/long")
    sections = re.findall(r"^## (Section \d+)$", reply, re.MULTILINE)
    assert len(sections) > 5
    lines = shown.splitlines()
    for heading in sections:  # each block once, in order: no redrawn copies
        assert lines.count(heading) == 1, heading
    assert [line for line in lines if line.startswith("Section ")] == sections
    assert lines.count(" • a second item") == reply.count("- a second item")
    t.send("/stats", "Enter")
    t.wait_for(lambda s: re.search(r"TTFT \d+ ms", s), what="the reply's figures")
    t.send("long 40", "Enter")  # a code block on screen now: highlighted (colours)
    t.wait_for(lambda s: prompt_count(s) == 4, what="the second reply")
    code_line = next(line for line in t.screen(escapes=True).splitlines() if "def" in line and "flow" in line)
    assert ESCAPE + "[" in code_line
    assert "figures after each reply: on" in t.history() and len(re.findall(r"TTFT \d+ ms", t.history())) == 2


def test_slash_commands(terminal, home):
    t = terminal("chat", "-m", "scripted/echo")
    t.wait_for(lambda s: prompt_count(s) == 1, what="the prompt")
    t.send("one", "Enter")
    t.wait_for(lambda s: prompt_count(s) == 2, what="a reply")
    first = last_conversation(home)["session_id"]
    t.send("/model scripted/long", "Enter")
    t.wait_for(lambda s: "model: scripted/long" in s, what="the model switch")
    t.send("long 3", "Enter")
    t.wait_for(lambda s: prompt_count(s) == 4 and "Section 0" in s, what="a reply from the other model")
    t.send("/new", "Enter")
    t.wait_for(lambda s: s.count("new conversation") == 2, what="/new")
    t.send("/system be brief", "Enter")
    t.send("/nope", "Enter")
    t.wait_for(lambda s: "system prompt: be brief" in s and "unknown command /nope" in s, what="the notes")
    t.send("two", "Enter")
    t.wait_for(lambda s: prompt_count(s) == 8, what="a reply in the new conversation")
    assert last_conversation(home)["session_id"] not in (None, first)
    assert last_conversation(home)["system"] == "be brief"
    t.send("C-d")
    assert t.exit_status() == 0


def test_threads_are_listed_searched_shown_and_exported(server, home, tmp_path):
    reply = requests.post(f"{server.url}/api/chat", json={"message": "tell me about the zambezi",
                                                           "model": "scripted/echo"}, timeout=30).json()
    thread_id, env = reply["thread_id"], {**home, "RILL_URL": server.url}
    listed = rill(["threads"], env)
    assert listed.returncode == 0 and f"{thread_id}" in listed.stdout and "tell me about the zambezi" in listed.stdout
    found = rill(["threads", "search", "zambezi"], env)
    assert found.returncode == 0 and f"{thread_id}  tell me about the [zambezi]" in found.stdout
    shown = rill(["threads", "show", thread_id], env)
    assert shown.returncode == 0 and "tell me about the zambezi" in shown.stdout
    out = tmp_path / "thread.md"
    assert rill(["threads", "export", thread_id, "-o", str(out)], env).returncode == 0
    assert out.read_text().startswith("# tell me about the zambezi\n\n**You**\n\ntell me about the zambezi\n")
    missing = rill(["threads", "show", "no-such-thread"], env)
    assert missing.returncode == 1 and missing.stderr.strip() == "rill: server answered 404: no thread 'no-such-thread'"


def test_rill_serve_runs_the_server(tmp_path, home):
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RILL_")}
    log = tmp_path / "serve.log"  # a file: a pipe nobody reads fills, and the server blocks on its next line
    with open(log, "wb") as out:
        process = subprocess.Popen([RILL, "serve", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                   env={**environment, **home, "RILL_DATA_DIR": str(tmp_path / "data"),
                                        "RILL_DEFAULT_MAX_TOKENS": "16"})  # a sampled reply may run to 512
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["status"] == "ok":
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        result = rill(["ask", "--stats", "Say hi."], {**home, "RILL_URL": f"http://127.0.0.1:{port}"})
        assert result.returncode == 0 and result.stdout.strip() and "completion tokens" in result.stderr
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory):
    """A server with MCP servers (tests/mcp_tools.py): `t`, and `ask`, whose calls ask first."""
    home = tmp_path_factory.mktemp("cli-tools")
    srv = start_server("eventlet", home, RILL_MCP_CONFIG=config_file(home / "mcp.json", t=STDIO,
                                                                     ask={**STDIO, "ask_first": True}))
    yield srv
    stop_server(srv)


def test_ask_shows_the_calls_rill_runs_and_their_results_beside_the_reply(tools_server, home):
    done = rill(["ask", "--url", tools_server.url, "-m", "scripted/call", "--tools", "t/add", 't_add {"a": 2, "b": 3}'],
                home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "The result is 5.\n"  # the pipe gets the reply; the steps go to stderr
    assert done.stderr.splitlines() == ['→ t_add {"a": 2, "b": 3}', "← t_add: 5"]
    assert last_conversation(home)["tools"] == ["t/add"]
    refused = rill(["ask", "--url", tools_server.url, "-m", "scripted/call", "-t", "nope", "hi"], home)
    assert refused.returncode == 1 and "no MCP server 'nope'" in refused.stderr


def test_chat_asks_before_a_call_that_asks_first_and_lists_the_tools(tools_server, home):
    t = Terminal([RILL, "chat", "-m", "scripted/call", "-t", "ask"], {**home, "RILL_URL": tools_server.url})
    try:
        t.wait_for(lambda s: prompt_count(s) == 1, what="the prompt")
        t.send('ask_add {"a": 2, "b": 3}', "Enter")
        t.wait_for(lambda s: '→ ask_add {"a": 2, "b": 3}' in s and "Run ask_add? [y/N]" in s, what="the question")
        t.send("y", "Enter")
        t.wait_for(lambda s: "← ask_add: 5" in s and "The result is 5." in s and prompt_count(s) == 2,
                   what="the result and the answer")
        t.send('ask_add {"a": 1, "b": 1}', "Enter")
        t.wait_for(lambda s: s.count("Run ask_add? [y/N]") == 2, what="the second question")
        t.send("n", "Enter")
        declined = "the user did not approve this call; it was not run"
        t.wait_for(lambda s: f"← ask_add failed: {declined}" in s and prompt_count(s) == 3, what="the declined call")
        t.send("/tools", "Enter")
        t.wait_for(lambda s: "ask (asks first): ask/add, ask/slow" in s and "tools: ask" in s, what="the tools")
        t.send("C-d")
        assert t.exit_status() == 0
    finally:
        t.close()
