"""A chat turn: history + message -> provider -> the turn's event log.

A turn lives on its own. The provider's output becomes events in its log whoever reads it: a
reader waiting for the next event takes it and appends it itself (follow), and the turn's pump
does when no reader does, and always at a round's end; the request that started it is only the
first reader, and leaving only detaches. It ends complete, failed, cancelled (an explicit stop, or nobody read it for
`orphan_seconds`), or interrupted (the server shut down), and saves the exchange to the session
then, marked as such, before the final event goes out: whoever reads the thread after `done`
finds the reply there. Its figures (metrics, usage, the log line) are the observer's business.
"""
from __future__ import annotations

import enum
import json
import logging
import queue
import time
import uuid
from dataclasses import dataclass, replace
from itertools import chain
from typing import TYPE_CHECKING, Iterator, Protocol

from ..providers.base import (ChatMessage, Failure, Finish, GenerationOptions, Image, Job, Piece, Prompt, Provider,
                              ProviderError, Reasoning, Tool, ToolCall, ToolCallPart)
from ..refusals import Refused, not_multimodal
from ..conversations.attachments import tokens
from ..conversations.parts import chat_messages, reply_parts, text_of
from ..runtime import Channel, condition, lock
from .events import (Done, Error, ErrorBody, Payload, ReasoningText, Start, StreamEvent, Token, ToolApproval,
                     ToolApprovalRequest, ToolCallDelta, ToolCallEnd, ToolCallStart, ToolResult, Usage)
from .log import TurnLog
from .reasoning import reasoning_splitter

if TYPE_CHECKING:
    from ..mcp.servers import Call, Tool as McpTool
    from ..services import Services

log = logging.getLogger(__name__)
READER_GRACE = 1.0  # seconds the pump leaves the model's output to readers before it looks again (Turn.run)
GAPS_HELD = 64  # inter-token gaps a turn holds before it tells its observer (TurnObserver.gaps)


class TurnState(enum.Enum):
    NEW = "new"
    WAITING = "waiting"  # submitted; the model has not taken it yet
    RUNNING = "running"  # the model is writing it
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    ERROR = "error"
    INTERRUPTED = "interrupted"  # the server (or its worker) stopped while it was being written

    @property
    def ended(self) -> bool:
        return self._value_ in ENDED  # by value: hashing a member calls Python code, and this runs per piece


ENDED = frozenset({"complete", "cancelled", "error", "interrupted"})
ORDER = {state._value_: n for n, state in enumerate(TurnState)}  # new -> waiting -> running -> an end


class TurnObserver(Protocol):
    """What follows a turn from outside: metrics, usage, the log line (accounting.Accounting)."""

    def moved(self, turn: Turn, before: TurnState) -> None:
        """The turn went from `before` to turn.state."""

    def first_piece(self, turn: Turn) -> None:
        """The reply's first piece came (turn.first_at)."""

    def gaps(self, turn: Turn, gaps: list[float]) -> None:
        """Seconds between pieces of the reply that came after the first: told GAPS_HELD at a time,
        and the rest when the turn ends (observed once a token they cost more than its send)."""

    def ended(self, turn: Turn, finish: Finish | None) -> None:
        """The turn ended (finish is None when it failed or was interrupted)."""


@dataclass(frozen=True)
class Caller:
    """Who asks for a turn, and through which api (a metrics label) and request."""

    user: str = "anonymous"
    api: str = "sse"
    request_id: str = ""


def interrupted(message: str = "the server shut down while the reply was being written; the partial reply is "
                                "saved") -> ProviderError:
    """A new one each time: collect() raises it, and a raised exception keeps its traceback."""
    return ProviderError(message, type="interrupted")


@dataclass(frozen=True)
class Place:
    """Where a turn writes in a thread: under which question its reply goes."""

    thread_id: str
    question_id: str  # the reply's parent
    reply_id: str  # chosen up front: the start event names it


def start_turn(services: Services, caller: Caller, message: str | None, options: GenerationOptions,
               model: str | None = None, thread_id: str | None = None, parent_id: str | None = None,
               system: str | None = None, replace_turn: str | None = None, turn_id: str | None = None,
               new_root: bool = False, not_found: str = "thread_not_found", files: tuple[str, ...] = (),
               mcp_servers: tuple[str, ...] | None = None) -> Turn:
    """A turn of a thread (the app's routes). With a `message`, the question goes under
    `parent_id` (default: the thread's current leaf; a new thread when none is named) and the reply
    under it (`new_root`: the question starts a new root, an edit of the first question); without
    one, a new reply goes under the question `parent_id` (a regenerate).
    `replace_turn` asks that turn's question again beside it (the session API's regenerate).
    `files` (uploads' ids) go with the question; the model gets what each becomes (attachments.py).
    The model sees the path from the root down to the question; the tools of `mcp_servers` (None:
    those the thread remembers) are offered to it, and its calls to them run (the turn goes on
    from their results); the thread remembers them. Everything that can be refused is checked
    here, before any byte of a stream is sent; the question is saved then."""
    provider, model_id = services.providers.resolve(model)
    store, user = services.threads, caller.user
    if mcp_servers is None:  # the thread's choice, less servers no longer configured
        known = store.thread(thread_id, user) if thread_id else None
        servers = tuple(n for n in (known["mcp_servers"] if known else ()) if n.partition("/")[0] in services.mcp.config)
    else:
        servers = mcp_servers
    tools = mcp_tools(services, provider, model_id, servers, remembered=mcp_servers is None)
    if tools:
        options = replace(options, tool_choice="auto", tools=options.tools + tuple(
            Tool(name, tool.description, tool.schema or {"type": "object", "properties": {}})
            for name, tool in tools.items()))
    turn_id = turn_id or uuid.uuid4().hex

    rendered: dict[str, str | Image] = {}  # each file read once per turn

    def file_content(file_id: str) -> str | Image:
        if file_id not in rendered:
            rendered[file_id] = services.files.for_model(file_id, user, services.settings.file_token_limit, tokens)
        return rendered[file_id]

    for n, file_id in enumerate(files):  # refused before anything is written
        if services.files.get(file_id, user) is None:
            raise Refused("invalid_request_error", f"files.{n}: no file {file_id!r} (upload it with POST /api/files)")
    new_images = tuple(c for c in map(file_content, files) if isinstance(c, Image))
    check_modalities(provider, model_id, [ChatMessage("user", "", images=new_images)])
    with services.turns.reserve(user, turn_id):
        if thread_id is None:
            thread = store.create_thread(user)
            thread_id = thread["id"]
        elif (thread := store.thread(thread_id, user)) is None:
            raise Refused(not_found, f"no {'session' if not_found == 'session_not_found' else 'thread'} {thread_id!r}")
        elif replace_turn and (replaced := store.find_reply(thread_id, user, replace_turn)):
            question = store.message(thread_id, user, replaced["parent_id"])
            parent_id = question and question["parent_id"]
        elif parent_id is None:
            parent_id = None if new_root else thread["current_leaf"]
        elif store.message(thread_id, user, parent_id) is None:
            raise Refused("invalid_request_error", f"parent_id: no message {parent_id!r} in thread {thread_id!r}")
        chosen = None if mcp_servers is None else list(dict.fromkeys(mcp_servers))
        if chosen is not None and thread["mcp_servers"] != chosen:
            store.update_thread(user, thread_id, mcp_servers=chosen)
        if message is None:  # a new reply to an existing question
            question = store.message(thread_id, user, parent_id) if parent_id else None
            if question is None or question["role"] != "user":
                raise Refused("invalid_request_error", "without a message, parent_id must name the question to "
                                                       "answer again (a user message of the thread)")
            store.update_thread(user, thread_id, current_leaf=question["id"])  # every device: a reply is coming
        else:
            parts = [{"type": "text", "text": message}, *({"type": "file", "file_id": f} for f in files)]
            question = store.add_message(user, thread_id, parent_id, "user", parts, turn_id=turn_id)
        path = store.path(thread_id, user, leaf=question["id"])
        messages = [ChatMessage("system", system)] if system else []
        try:
            messages += chat_messages(path, file_content)[-(services.settings.max_history_messages + 1):]
            check_modalities(provider, model_id, messages)
        except Refused:  # an earlier message's image, and a model that reads text only: the question is not kept
            if message is not None:
                store.delete_message(user, thread_id, question["id"])
            raise
        place = Place(thread_id, question["id"], uuid.uuid4().hex)
        turn = Turn(services, Job(provider, model_id, messages, options), turn_id, caller, place,
                    text_of(question["parts"]), tools)
        services.turns.add(turn)
    return turn


def start_stateless_turn(services: Services, caller: Caller, model: str, messages: list[ChatMessage],
                         options: GenerationOptions) -> Turn:
    """A turn whose whole conversation comes with the request (the /v1 APIs): nothing is saved."""
    provider, model_id = services.providers.resolve(model)
    if options.tools and options.tool_choice != "none" and (why := provider.refuses_tools(model_id, options.tool_choice)):
        raise Refused("invalid_request_error", why)
    if why := provider.refuses_schemas(model_id, options):
        raise Refused("invalid_request_error", why)
    limit = services.settings.max_history_messages
    if len(messages) > limit + 1:
        raise Refused("invalid_request_error", f"messages: {len(messages)} messages; the limit is {limit + 1}")
    check_modalities(provider, model_id, messages)
    turn_id = uuid.uuid4().hex
    with services.turns.reserve(caller.user, turn_id):
        turn = Turn(services, Job(provider, model_id, messages, options), turn_id, caller)
        services.turns.add(turn)
    return turn


def mcp_tools(services: Services, provider: Provider, model: str, entries: tuple[str, ...],
              remembered: bool = False) -> dict[str, McpTool]:
    """The tools these `mcp_servers` entries offer, by the name the model calls them; refused when
    one is not configured or cannot be reached, or the model cannot call tools."""
    if not entries:
        return {}
    if why := provider.refuses_tools(model, "auto"):
        raise Refused("invalid_request_error", why)
    return {tool.qualified: tool for tool in services.mcp.offered(list(dict.fromkeys(entries)), remembered)}


def approve(turn: Turn, call_id: str, approved: bool) -> None:
    """The user's answer to a call waiting for approval, for the turn's owner (on any worker)."""
    if not turn.running or call_id not in awaiting_approval(turn.log.events):
        raise Refused("approval_not_awaited", f"no tool call {call_id!r} of turn {turn.id!r} waits for approval "
                                              "(answered already, ended, or never asked)")
    turn.decide(call_id, approved)


def awaiting_approval(events) -> set[str]:
    """The ids of the calls asked about in these events and not answered yet."""
    waiting = set()
    for event in events:
        if event.kind == "tool_approval_request":
            waiting.add(event.data["id"])
        elif event.kind == "tool_approval":
            waiting.discard(event.data["id"])
    return waiting


def check_modalities(provider: Provider, model: str, messages: list[ChatMessage]) -> None:
    """Images only for a model that reads them: refused, never dropped."""
    image = next((image for m in messages for image in m.images), None)
    if image is not None and "image" not in provider.input_modalities(model):
        raise not_multimodal(f"{provider.name}/{model}", image.name)


@dataclass
class Collected:
    """A turn read to its end, from its events: what a non-streamed reply is made of."""

    text: str
    reasoning: str
    tool_calls: list[dict]  # {id, name, arguments}, in the order they began
    done: dict  # the `done` event's data


class Turn:
    def __init__(self, services: Services, job: Job, turn_id: str, caller: Caller = Caller(),
                 place: Place | None = None, message: str = "", tools: dict[str, McpTool] | None = None):
        self.services = services
        self.observer: TurnObserver = services.accounting
        self.job = job
        self.caller = caller
        self.user = caller.user
        self.place = place  # None: a turn of the /v1 APIs, saved nowhere
        self.message = message
        self.model = f"{job.provider.name}/{job.model}"
        self.id = turn_id
        self.log = services.turns.open_log(turn_id)
        self.created = time.perf_counter()
        self.state = TurnState.NEW
        self.running = True  # until the state is an end (read once a piece: a plain attribute)
        self.ended_at: float | None = None  # monotonic: how long it stays readable counts from here
        self.error: ProviderError | None = None
        self.prompt_tokens: int | None = None  # known once the provider reports it
        self.pieces: list[str] = []  # the answer's text
        self.reasoning: list[str] = []
        self.tool_calls: list[dict] = []  # {index, id, name, arguments}, in the order they began
        self.open_calls: dict[int, dict] = {}  # the calls not yet ended, by the upstream's index
        self.splitter = reasoning_splitter(services.settings.reasoning_tags)
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.gaps: list[float] = []  # between pieces, not yet told to the observer
        self._ending = lock()  # taken once a piece: the server's own kind of lock
        self.driving = lock()  # held by whoever takes the provider's output: the pump, or a reader (follow)
        self.drivers = 0  # readers that take it while they wait
        self.deferred: Finish | Failure | None = None  # what a reader took that only the pump handles
        self.wanted = condition()  # the pump waits on it while readers take the output
        self._interrupting = False  # a cancel from a shutdown: the turn ends interrupted
        self.tools = tools or {}  # the MCP tools Rill runs when the model calls them, by that name
        self.rounds = 0  # tool rounds run
        self.done_parts: list[dict] = []  # the parts of the rounds before this one: calls, then their results
        self.round_start = (0, 0)  # where this round's text and calls begin
        self.spent = (0, 0, 0)  # earlier rounds' prompt, completion and cached tokens
        self.call: Call | None = None  # the tool call running now
        self.decisions = Channel()  # (call id, approved) for a call waiting for approval; (None, False): stop

    @property
    def thread_id(self) -> str | None:
        return self.place and self.place.thread_id

    def cancel(self) -> None:
        """Stop the model within one decode step (or the running tool call at once); the turn ends
        `cancelled` with what it wrote."""
        self.job.cancel.set()
        if (call := self.call) is not None:
            call.cancel()
        self.decisions.put((None, False))

    def decide(self, call_id: str, approved: bool) -> None:
        """The user's answer for a call waiting for approval (one not waiting is ignored)."""
        self.decisions.put((call_id, approved))

    @property
    def cancelling(self) -> bool:
        return self.job.cancel.is_set()

    def interrupt(self) -> None:
        self._interrupting = True
        self.cancel()

    def begin(self) -> None:
        """The first event, before any reader follows (Turns.add): what a reader waits for after it
        is the model's output, which it may take itself (follow)."""
        place = self.place
        self.log.append(Start(place and place.thread_id, place and place.thread_id, self.id, self.model,
                              place and place.question_id, place and place.reply_id))
        with self._ending:
            self._move_to(TurnState.WAITING)

    def run(self) -> None:
        """The pump: the provider's output into the log, until the turn ends, while no reader takes
        it (follow); what only the pump does (a round's end: the reply saved, tools run) always. A
        store that fails under it (Redis gone for good) stops the model and frees the user's slot;
        readers of a log they cannot reach have ended already."""
        self.services.providers.submit(self.job)
        try:
            while True:
                with self.wanted:
                    while self.drivers and self.deferred is None and self.running and not self._left():
                        self.wanted.wait(READER_GRACE)
                if not self.running:
                    return
                self.driving.acquire()
                try:
                    item, self.deferred = self.deferred, None
                    self._handle(self.job.channel.get() if item is None else item)
                finally:
                    self._let_go()
        except Exception:
            log.exception("turn %s: its log or session could not be written; stopping it", self.id)
            self.job.cancel.set()
            with self._ending:
                self.ended_at = time.monotonic()
                self._move_to(TurnState.ERROR)

    def follow(self, after: int = -1, keepalive: float = 15.0) -> Iterator[list[StreamEvent]]:
        """The turn's events (TurnLog.follow). Where the log is this process's, a reader waiting for
        the next one takes the model's output and writes it into the log itself, where the pump
        would: a token wakes one thread (or green thread), not the pump's and then the reader's."""
        if not isinstance(self.log, TurnLog):  # Redis: every worker's readers wait on the stream
            return self.log.follow(after, keepalive)
        return self.log.follow(after, keepalive, self)

    def joined(self) -> None:
        """A reader follows (TurnLog.follow): the pump steps aside."""
        with self.wanted:
            self.drivers += 1

    def left(self) -> None:
        with self.wanted:
            self.drivers -= 1
            if not self.drivers:  # the pump takes over
                self.wanted.notify_all()

    def take(self, timeout: float) -> bool:
        """For a reader waiting for the next event (TurnLog.follow): the model's next output into the
        log, waiting `timeout` seconds at most; False when it is not this reader's to take now."""
        if self.deferred is not None or not self.running or not self.driving.acquire(False):
            return False
        try:
            try:
                item = self.job.channel.get(timeout=timeout)
            except queue.Empty:
                return True
            if isinstance(item, (Finish, Failure)):  # the pump's: it saves the reply, runs tools, waits for approvals
                with self.wanted:
                    self.deferred = item
                    self.wanted.notify_all()
            else:
                self._handle(item)
            return True
        finally:
            self._let_go(reader=True)

    def _left(self) -> bool:
        """Output waits that no reader is taking: theirs are slow to read (a reader is only back
        for more once its last batch is written); the pump takes it, and the turn ends on time."""
        return not self.job.channel.empty() and not self.driving.locked()

    def taken(self) -> bool:
        """Asked under the log's lock by a reader that could not take: someone else takes the
        output, or the pump's turn has come; it is woken when that changes (_let_go)."""
        return self.driving.locked() or self.deferred is not None or not self.running

    def _let_go(self, reader: bool = False) -> None:
        """Let go of the model's output; `reader`: a reader (one of the drivers) lets go."""
        self.driving.release()
        if self.drivers > reader:  # other readers that found it taken may take it now
            with self.log.changed:
                self.log.changed.notify_all()

    def _handle(self, item: Prompt | Piece | Reasoning | ToolCallPart | Finish | Failure | None) -> None:
        """One item of the provider's output into the turn (None: a wake-up, see end())."""
        if self.state is TurnState.WAITING:
            with self._ending:
                self._move_to(TurnState.RUNNING)
        match item:
            case Prompt(tokens):
                self.prompt_tokens = tokens
            case Piece(text):
                for kind, part in self.splitter.feed(text):
                    self._text(kind, part)
            case Reasoning(text):
                self._text("reasoning", text)
            case ToolCallPart() as part:
                self.tool_call(part)
            case Finish() as finish:
                for kind, part in self.splitter.flush():
                    self._text(kind, part)
                finish = self._spend(finish)
                self.prompt_tokens = finish.prompt_tokens
                if self._runs_tools(finish):
                    self._run_tools(finish)
                elif self._interrupting:
                    self.end(TurnState.INTERRUPTED, interrupted())
                else:
                    self.end(TurnState.CANCELLED if finish.reason == "cancelled" else TurnState.COMPLETE,
                             finish=finish)
            case Failure(error):
                self.end(TurnState.ERROR, error)

    def _text(self, kind: str, text: str) -> None:
        """Answer text (`token`) or `reasoning`."""
        with self._ending:
            if not self._timed():
                return
            if kind == "token":
                self.pieces.append(text)
                self.log.append(Token(text, len(self.pieces)))
            else:
                self.reasoning.append(text)
                self.log.append(ReasoningText(text))

    def _timed(self) -> bool:
        """For a piece of the reply, under the lock: False once the turn has ended (a shutdown may
        end it first); else the piece is timed."""
        if not self.running:
            return False
        now = time.perf_counter()
        if self.first_at is None:
            self.first_at = now
            self.observer.first_piece(self)
        else:
            self.gaps.append(now - self.last_at)
            if len(self.gaps) == GAPS_HELD:
                self.observer.gaps(self, self.gaps)
                self.gaps = []
        self.last_at = now
        return True

    def tool_call(self, part: ToolCallPart) -> None:
        """A fragment of a call. The upstream's index names the call for the whole reply (the API's
        way, and the openai SDK's): fragments of parallel calls may interleave, and only a new id on
        a known index starts another call there. Readers see the call's place in the reply as its
        index, whatever the upstream numbered."""
        call = self.open_calls.get(part.index)
        if call is None or (part.id and part.id != call["id"]):
            if call is not None:
                self._end_call(part.index)
            call = {"index": len(self.tool_calls), "id": part.id or f"call_{uuid.uuid4().hex[:24]}",
                    "name": part.name or "", "arguments": ""}
            self.tool_calls.append(call)
            self.open_calls[part.index] = call
            with self._ending:
                if self._timed():
                    self.log.append(ToolCallStart(call["index"], call["id"], call["name"]))
        if part.arguments:
            call["arguments"] += part.arguments
            with self._ending:
                if self._timed():
                    self.log.append(ToolCallDelta(call["index"], part.arguments))

    def _end_call(self, upstream_index: int) -> None:
        call = self.open_calls.pop(upstream_index)
        with self._ending:
            if self.running:
                self.log.append(ToolCallEnd(call["index"]))

    def _end_tool_calls(self) -> None:
        """The reply is over: every call still open is complete, in the order they began."""
        for upstream_index in sorted(self.open_calls, key=lambda i: self.open_calls[i]["index"]):
            self._end_call(upstream_index)

    def _spend(self, finish: Finish) -> Finish:
        """The turn's tokens so far: this round's added to the earlier rounds'."""
        prompt, completion, cached = self.spent
        return replace(finish, prompt_tokens=prompt + finish.prompt_tokens,
                       completion_tokens=completion + finish.completion_tokens,
                       cached_tokens=cached + finish.cached_tokens)

    def _runs_tools(self, finish: Finish) -> bool:
        """The round ended in calls Rill runs (each one to a tool it offered), with rounds left (a
        model that calls again after the last one ends the turn with its calls not run)."""
        calls = self.tool_calls[self.round_start[1]:]
        return (bool(calls) and finish.reason != "cancelled" and not self.cancelling
                and self.rounds < self.services.settings.max_tool_rounds
                and all(c["name"] in self.tools for c in calls))

    def _run_tools(self, finish: Finish) -> None:
        """Run this round's calls one by one, each result an event; then the model goes on from
        them in a new round (the last one without tools: it must answer)."""
        self._end_tool_calls()
        text_at, calls_at = self.round_start
        calls = self.tool_calls[calls_at:]
        parts = reply_parts("".join(self.pieces[text_at:]), "", calls)
        results = []
        for call in calls:
            output = self._run(call)
            if output is None:  # stopped
                self.end(TurnState.INTERRUPTED if self._interrupting else TurnState.CANCELLED,
                         interrupted() if self._interrupting else None, replace(finish, reason="cancelled"))
                return
            content, is_error = output
            with self._ending:
                if not self.running:
                    return
                self.log.append(ToolResult(call["index"], call["id"], content, is_error))
            results.append(ChatMessage("tool", content, tool_call_id=call["id"], name=call["name"]))
            parts.append({"type": "tool_result", "tool_call_id": call["id"], "content": content})
        self.done_parts += [p for p in parts if p["type"] != "text" or p["text"]]
        self.rounds += 1
        self.round_start = (len(self.pieces), len(self.tool_calls))
        self.spent = (finish.prompt_tokens, finish.completion_tokens, finish.cached_tokens)
        job = self.job
        said = ChatMessage("assistant", "".join(self.pieces[text_at:]),
                           tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in calls))
        last = self.rounds >= self.services.settings.max_tool_rounds
        options = replace(job.options, tool_choice="none") if last else job.options
        self.job = Job(job.provider, job.model, [*job.messages, said, *results], options, cancel=job.cancel)
        self.services.providers.submit(self.job)

    def _run(self, call: dict) -> tuple[str, bool] | None:
        """One call's (content, is_error); None when the turn was stopped meanwhile."""
        tool = self.tools[call["name"]]
        try:
            arguments = json.loads(call["arguments"] or "{}")
        except ValueError as err:
            return f"the arguments are not valid JSON ({err}): {call['arguments'][:200]}", True
        if not isinstance(arguments, dict):
            return "the arguments must be a JSON object", True
        if self.services.mcp.config[tool.server].ask_first:
            approved = self._approval(call)
            if approved is None:
                return None
            if not approved:
                return "the user did not approve this call; it was not run", True
        self.call = running = self.services.mcp.call(tool.server, tool.name, arguments)
        if self.cancelling:  # stopped just before the call began
            running.cancel()
        output = running.result()
        self.call = None
        return None if self.cancelling else (output.text, output.is_error)

    def _approval(self, call: dict) -> bool | None:
        """Ask the user, and wait (RILL_TOOL_APPROVAL_SECONDS at most: then it is declined);
        None when the turn was stopped meanwhile."""
        with self._ending:
            if not self.running:
                return None
            self.log.append(ToolApprovalRequest(call["index"], call["id"]))
        deadline = time.monotonic() + self.services.settings.tool_approval_seconds
        approved = False
        while not self.cancelling:
            try:
                call_id, approved = self.decisions.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if call_id == call["id"]:
                break
            approved = False  # an answer for another call, or a wake-up to stop
        if self.cancelling:
            return None
        with self._ending:
            if not self.running:
                return None
            self.log.append(ToolApproval(call["index"], call["id"], approved))
        return approved

    def end(self, state: TurnState, error: ProviderError | None = None, finish: Finish | None = None) -> None:
        """Save the reply, then write the final event; once, whoever calls first (the pump, or a
        shutdown that cannot wait for the model)."""
        self._end_tool_calls()
        with self._ending:
            if not self.running:
                return
            self.error = error
            final: Payload = Error(ErrorBody(error.type, error.message)) if error else self._done(finish)
            if self.place:
                self._save(state, finish, final)
            self.ended_at = time.monotonic()  # the user's slot is free from here
            self._move_to(state)
            try:
                self.observer.gaps(self, self.gaps)
                self.observer.ended(self, finish)
            except Exception:  # the reply is saved; losing its figures must not fail it
                log.exception("turn %s: recording its usage failed", self.id)
            self.log.append(final)
        self.job.channel.put(None)  # whoever waits for the model's output (the pump, a reader) sees the end
        with self.wanted:
            self.wanted.notify_all()

    def _save(self, state: TurnState, finish: Finish | None, final: Payload) -> None:
        usage = timings = None
        if isinstance(final, Done):
            usage = {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens,
                     "cached_tokens": finish.cached_tokens}
            timings = {"ttft_ms": final.ttft_ms, "duration_ms": final.duration_ms,
                       "tokens_per_second": final.tokens_per_second}
        text_at, calls_at = self.round_start
        reasoning = "".join(self.reasoning)  # all rounds' thinking, shown first
        parts = [*([{"type": "reasoning", "text": reasoning}] if reasoning else []), *self.done_parts,
                 *reply_parts("".join(self.pieces[text_at:]), "", self.tool_calls[calls_at:])]
        try:
            self.services.threads.add_message(self.user, self.place.thread_id, self.place.question_id, "assistant",
                                              parts, id=self.place.reply_id, status=state.value, model=self.model,
                                              usage=usage, timings=timings, turn_id=self.id)
        except Refused as gone:  # the thread (or the question) was deleted while the reply was written
            log.info("turn %s: its reply is not saved: %s", self.id, gone.message)

    def _move_to(self, state: TurnState) -> None:
        """Forward only: new -> waiting -> running -> one end."""
        if state is self.state or self.state.ended or ORDER[state._value_] < ORDER[self.state._value_]:
            return
        before, self.state, self.running = self.state, state, not state.ended
        self.observer.moved(self, before)

    def _done(self, finish: Finish) -> Done:
        now = time.perf_counter()
        first_at = self.first_at
        decode_seconds = now - first_at if first_at else 0.0
        tokens = finish.completion_tokens
        return Done(
            done=True, tokens=tokens, finish_reason=finish.reason,
            ttft_ms=round((first_at - self.created) * 1000, 1) if first_at else None,
            duration_ms=round((now - self.created) * 1000, 1),
            tokens_per_second=round((tokens - 1) / decode_seconds, 1) if tokens > 1 and decode_seconds > 0 else None,
            usage=Usage(finish.prompt_tokens, tokens, finish.cached_tokens, "rill" if finish.counted else None),
            stop_sequence=finish.stop_sequence, hidden_states=finish.hidden_states)

    def collect(self) -> Collected:
        """Read the turn to its end (non-streaming), from its events."""
        text, reasoning, calls = [], [], []
        for event in chain.from_iterable(self.follow(keepalive=self.services.settings.keepalive_seconds)):
            data = event.data
            if event.kind == "token":
                text.append(data["token"])
            elif event.kind == "reasoning":
                reasoning.append(data["reasoning"])
            elif event.kind == "tool_call_start":
                calls.append({"id": data["id"], "name": data["name"], "arguments": ""})
            elif event.kind == "tool_call_delta":
                calls[data["index"]]["arguments"] += data["arguments"]
            elif event.kind == "error":
                raise ProviderError(data["error"]["message"], data["error"]["type"])
            elif event.kind == "done":
                return Collected("".join(text), "".join(reasoning), calls, data)
        raise ProviderError("the turn ended without a reply")
