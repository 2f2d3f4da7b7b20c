"""The `rill` command: ask, chat, threads, serve, token."""
from __future__ import annotations

import functools
import io
import os
import sys
import warnings
from pathlib import Path

import click
from rich.console import Console
from rich.markdown import Markdown

from . import config
from .backends import Reply, RillBackend, ToolStep, connect
from .conversation import Conversation, Conversations
from .errors import ClientError
from .keys import LineReader, ReplyKeys
from .render import tool_step, view_for
from .threads import ThreadsClient, plain

# The commands that run server code (pull, token) import eventlet, which warns on import: not the user's concern.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

HELP = """/new             start a new conversation
/model [NAME]    show or set the model
/system [TEXT]   set the system prompt (no text: none)
/stats           show the last reply's figures, and turn them on after each reply (again: off)
/attach FILE     send a file with the next message (a PDF, text, an image; `-`: standard input)
/tools [NAME...] show or set the tools the model may call, Rill running them: MCP servers or
                 server/tool (`none`: no tools); a call that asks first waits for your y or n
/help            this list
Ctrl-C stops a reply (the partial text is kept); Ctrl-D exits."""


def conversation_options(command):
    """What ask and chat share: where to send, which model, which conversation."""
    for option in reversed([
        click.option("--backend", "-b", help="a backend named in the config file"),
        click.option("--url", help="the server's address (default: RILL_URL or http://127.0.0.1:5000)"),
        click.option("--model", "-m", help="the model to ask (default: the server's)"),
        click.option("--system", "-s", help="a system prompt"),
        click.option("--continue", "-c", "resume", is_flag=True, help="continue the last conversation"),
        click.option("--session", help="continue this Rill session"),
        click.option("--stats", is_flag=True, help="show time to first token, tokens/s and token counts"),
        click.option("--tools", "-t", multiple=True, metavar="NAME",
                     help="an MCP server of the Rill server (or server/tool) whose tools the model may call, "
                          "Rill running them; repeatable; `none`: no tools (default: the conversation's)"),
    ]):
        command = option(command)

    return reports_client_errors(command)


def reports_client_errors(command):
    """A ClientError ends the command with its one line and status 1."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ClientError as exc:
            click.echo(f"rill: {exc}", err=True)
            sys.exit(1)
    return run


def open_conversation(backend_name, url, model, system, resume, session, tools=()):
    """The backend to talk to and the conversation to talk in."""
    name, backend = config.pick(config.load(config.config_path()), backend_name, url)
    store = Conversations(config.state_dir())
    conversation = (store.last(name) if resume else None) or Conversation(name)
    if session:
        if backend.type != "rill":
            raise ClientError(f"--session needs a Rill backend ({name} is {backend.type}); use --continue")
        conversation = Conversation(name, session_id=session)
    conversation.model = model or conversation.model
    conversation.system = system if system is not None else conversation.system
    if tools:
        if backend.type != "rill":
            raise ClientError(f"--tools needs a Rill backend ({name} is {backend.type}): Rill runs the tools")
        conversation.tools = chosen_tools(tools)
    return backend, conversation, store


def chosen_tools(names) -> list[str]:
    """`mcp_servers` from the names given (`none`: no tools)."""
    return [] if list(names) == ["none"] else list(names)


def attach(client, path: str) -> dict:
    """Upload a file (`-`: standard input) for the next question: its row on the server."""
    if not isinstance(client, RillBackend):
        raise ClientError("files need a Rill backend (this one speaks an OpenAI or Anthropic API)")
    if path == "-":
        return client.upload("stdin.txt", io.BytesIO(sys.stdin.buffer.read()))  # a pipe has no length to send
    try:
        with open(path, "rb") as data:
            return client.upload(os.path.basename(path), data)
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}")


def answer(client, conversation: Conversation, message: str, view, keys: ReplyKeys, files: tuple[str, ...] = ()
           ) -> Reply:
    """Stream one reply into the view; Ctrl-C stops it on the server and keeps what came (a Ctrl-C
    pressed after Enter but before the reply began stops it before it is sent). `files`: uploads'
    ids that go with the message."""
    reply = Reply()
    try:
        with keys.reply():
            for piece in client.stream(conversation, message, reply, *((files,) if files else ())):
                if isinstance(piece, ToolStep):
                    view.end()  # the text so far stays above the call
                    if piece.kind == "ask":
                        client.approve(reply, piece.id, keys.confirm(f"Run {piece.name}? [y/N] "))
                    else:
                        view.note(tool_step(piece))
                    continue
                with keys.draw():
                    view.add(piece)
    except KeyboardInterrupt:
        reply.finish_reason = "stopped"
        client.stop(reply)
    finally:
        view.end()
    if reply.finish_reason == "stopped":
        view.note("(stopped)")
    return reply


@click.group()
def cli():
    """Talk to Rill (or any OpenAI- or Anthropic-compatible server) from the terminal, and run it."""


@cli.command()
@click.argument("question", nargs=-1)
@click.option("--attach", "-a", "attached", multiple=True, metavar="FILE",
              help="a file to send with the question (a PDF, text, an image; `-`: standard input); repeatable")
@conversation_options
def ask(question, attached, backend, url, model, system, resume, session, stats, tools):
    """Ask one QUESTION; the reply streams to stdout. Text piped on stdin is context for it."""
    context = "" if sys.stdin.isatty() or "-" in attached else sys.stdin.read().strip()
    message = "\n\n".join(part for part in (context, " ".join(question).strip()) if part)
    if not message:
        raise click.UsageError("nothing to ask: give a question, or pipe text in")
    settings, conversation, store = open_conversation(backend, url, model, system, resume, session, tools)
    view = view_for(Console())
    client = connect(settings, view.note)
    files = tuple(attach(client, path)["id"] for path in attached)
    try:
        with ReplyKeys() as keys:
            keys.entered = True
            reply = answer(client, conversation, message, view, keys, files)
    finally:
        store.save(conversation)
    if stats:
        click.echo(reply.stats(), err=True)
    if reply.finish_reason == "stopped":
        sys.exit(130)


@cli.command()
@conversation_options
def chat(backend, url, model, system, resume, session, stats, tools):
    """A conversation: Markdown rendered as it streams; /help lists the commands."""
    settings, conversation, store = open_conversation(backend, url, model, system, resume, session, tools)
    console = Console()
    view = view_for(console)
    client = connect(settings, view.note)
    with ReplyKeys() as keys:
        converse(client, settings, conversation, store, console, view, keys, stats)


def converse(client, settings, conversation: Conversation, store: Conversations, console: Console, view, keys,
             stats: bool) -> None:
    """The chat loop: a line at a time, a reply or a command for each."""
    read = prompt_reader(keys)
    where = f"{conversation.backend} ({settings.url})"
    state = "continuing" if conversation.session_id or conversation.messages else "new conversation"
    console.print(f"rill chat · {where} · {state} · /help for commands, Ctrl-D to exit", style="dim",
                  markup=False, highlight=False)
    last: Reply | None = None
    attached: list[dict] = []  # for the next question
    while True:
        try:
            line = read().strip()
        except KeyboardInterrupt:
            continue
        except EOFError:
            return
        if not line:
            continue
        if line.startswith("/"):
            command, _, argument = line.partition(" ")
            argument = argument.strip()
            if command == "/new":
                conversation = Conversation(conversation.backend, model=conversation.model,
                                            system=conversation.system)
                store.save(conversation)
                view.note("new conversation")
            elif command == "/model":
                conversation.model = argument or conversation.model
                view.note(f"model: {conversation.model or settings.model or 'the server default'}")
            elif command == "/system":
                conversation.system = argument or None
                view.note(f"system prompt: {conversation.system or 'none'}")
            elif command == "/stats":
                stats = not stats
                view.note(last.stats() if last else "no reply yet")
                view.note(f"figures after each reply: {'on' if stats else 'off'}")
            elif command == "/attach":
                if not argument:
                    view.note("attached: " + (", ".join(f["name"] for f in attached) or "nothing"))
                    continue
                try:
                    attached.append(attach(client, argument))
                except ClientError as exc:
                    view.note(f"rill: {exc}")
                    continue
                view.note(f"attached {attached[-1]['name']} ({attached[-1]['type']}, {attached[-1]['size']:,} bytes): "
                          "it goes with your next message")
            elif command == "/tools":
                if not isinstance(client, RillBackend):
                    view.note("tools need a Rill backend: Rill runs them")
                    continue
                if argument:
                    conversation.tools = chosen_tools(argument.split())
                else:
                    try:
                        for server in client.mcp_servers():
                            tools = ", ".join(t["id"] for t in server["tools"]) or server.get("error", "no tools")
                            view.note(f"{server['name']}{' (asks first)' if server['ask_first'] else ''}: {tools}")
                    except ClientError as exc:
                        view.note(f"rill: {exc}")
                chosen = conversation.tools
                view.note("tools: " + ("the conversation's (as the server keeps them)" if chosen is None
                                       else ", ".join(chosen) or "none"))
            elif command == "/help":
                view.note(HELP)
            else:
                view.note(f"unknown command {command}; /help lists them")
            continue
        try:
            last = answer(client, conversation, line, view, keys, tuple(f["id"] for f in attached))
        except ClientError as exc:
            view.note(f"rill: {exc}")
            continue
        finally:
            attached = []  # sent with that message (or refused with it: /attach them again)
            store.save(conversation)
        if stats:
            view.note(last.stats())


def prompt_reader(keys: ReplyKeys):
    """The line editor in a terminal, plain lines otherwise."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        config.state_dir().mkdir(parents=True, exist_ok=True)
        return LineReader(str(config.state_dir() / "history"), keys)

    def read_plain() -> str:
        keys.pressed, keys.entered = False, False
        line = input()
        keys.entered = True
        return line

    return read_plain


@cli.group(invoke_without_command=True)
@click.option("--backend", "-b", help="a backend named in the config file (a Rill one)")
@click.option("--url", help="the server's address (default: RILL_URL or http://127.0.0.1:5000)")
@click.pass_context
@reports_client_errors
def threads(ctx, backend, url):
    """Your conversations on a Rill server: list them (no command), search, show, export."""
    name, settings = config.pick(config.load(config.config_path()), backend, url)
    if settings.type != "rill":
        raise click.UsageError(f"threads live on a Rill server; {name} is {settings.type}")
    ctx.obj = ThreadsClient(settings.url, settings.key())
    if ctx.invoked_subcommand is None:
        for thread in ctx.obj.list():
            click.echo(f"{thread['id']}  {thread['updated_at'][:16].replace('T', ' ')}  "
                       f"{thread['message_count']:4d}  {thread['title'] or '(untitled)'}")


@threads.command("search")
@click.argument("words", nargs=-1, required=True)
@click.pass_obj
@reports_client_errors
def threads_search(client, words):
    """Messages with all these WORDS, on any branch of any thread."""
    for hit in client.search(" ".join(words)):
        click.echo(f"{hit['thread_id']}  {plain(hit['snippet'])}")


@threads.command("show")
@click.argument("thread_id")
@click.pass_obj
@reports_client_errors
def threads_show(client, thread_id):
    """A thread's current path, rendered as Markdown."""
    Console().print(Markdown(client.markdown(thread_id)))


@threads.command("export")
@click.argument("thread_id")
@click.option("--format", "kind", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="a file (default: stdout)")
@click.pass_obj
@reports_client_errors
def threads_export(client, thread_id, kind, output):
    """A thread as Markdown (its current path) or Rill JSON (the whole tree)."""
    text = client.export(thread_id, kind)
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option("--host", help="address to listen on (RILL_HOST, default 127.0.0.1)")
@click.option("--port", type=int, help="port to listen on (RILL_PORT, default 5000)")
def serve(host, port):
    """Start the Rill server (what `make run` runs), from any directory: threads and files in
    $XDG_DATA_HOME/rill, caches in $XDG_CACHE_HOME/rill, models in the hub's cache."""
    if host:
        os.environ["RILL_HOST"] = host
    if port:
        os.environ["RILL_PORT"] = str(port)
    # The entry point patches eventlet before anything else is imported: a fresh interpreter.
    os.execv(sys.executable, [sys.executable, "-m", "rill.entry"])


@cli.command()
@click.argument("user")
@click.option("--ttl", default="1h", show_default=True, help="lifetime: 30m, 12h, 7d ...")
def token(user, ttl):
    """Print a signed token for USER (needs the server's RILL_JWT_SECRET or RILL_JWT_PRIVATE_KEY)."""
    from rill.auth import Auth, parse_ttl
    from rill.config import Settings

    click.echo(Auth(Settings.from_env()).mint(user, parse_ttl(ttl)))


def hub_failure(err) -> None:
    click.echo(f"rill: {err}", err=True)
    sys.exit(1)


@cli.command()
@click.argument("name")
def pull(name):
    """Download a model from the Hugging Face hub: org/repo:QUANT (a GGUF file of that
    quantization, Q4_K_M by default, and the repository's vision projector) or org/repo."""
    from rill.providers.local.hub import PullError, pull as pull_model

    try:
        pulled = pull_model(name)
    except PullError as err:
        hub_failure(err)
    click.echo(f"{pulled.repo}: {pulled.path}")
    if pulled.mmproj:
        click.echo(f"vision projector: {pulled.mmproj}")
    click.echo(f"serve it: RILL_MODEL=hf:{name.removeprefix('hf:')} rill serve")


@cli.command()
def models():
    """The models pulled from the hub, largest first."""
    from rill.providers.local.hub import local_models

    for model in local_models():
        click.echo(f"{model['repo']}  {model['size'] / 1e6:,.1f} MB  {model['files']} files")


@cli.command()
@click.argument("repo")
def rm(repo):
    """Delete a pulled model from the hub's cache."""
    from rill.providers.local.hub import remove

    if not remove(repo):
        hub_failure(f"no pulled model {repo} (rill models lists them)")
    click.echo(f"deleted {repo}")
