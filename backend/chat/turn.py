"""A chat turn: history + message -> provider (in the engine) -> the turn's event log.

A turn lives on its own. Its pump reads the provider's output and appends events to the log,
whoever reads it; the request that started it is only the first reader, and leaving only
detaches. It ends complete, failed, cancelled (an explicit stop, or nobody read it for
`orphan_seconds`), or interrupted (the server shut down), and saves the exchange to the session
then, marked as such, before the final event goes out: whoever reads the session after `done`
finds the reply there. Finished turns stay readable for `turn_retention_seconds`.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid

from .. import metrics
from ..refusals import Refused
from ..providers.base import (ChatMessage, Failure, Finish, GenerationOptions, Piece, Prompt, ProviderError, Reasoning,
                              ToolCallPart)
from ..providers.engine import Job, spawn
from ..schemas import ChatRequest
from ..usage import TurnUsage
from .log import TurnLog
from .reasoning import ReasoningSplitter

log = logging.getLogger(__name__)

def interrupted() -> ProviderError:
    """A new one each time: collect() raises it, and a raised exception keeps its traceback."""
    return ProviderError("the server shut down while the reply was being written; the partial reply is saved",
                         type="interrupted", status=503)


def start_turn(services, req: ChatRequest, user: str = "anonymous", api: str = "sse", request_id: str = "") -> "Turn":
    """A turn of a session (the app's routes). Everything that can be refused with a 4xx is
    checked here, before any byte of a stream is sent."""
    provider, model_id = services.models.resolve(req.model)
    turn_id = req.turn_id or uuid.uuid4().hex
    with services.turns.reserve(user, turn_id):
        session_id, job = _session_job(services, req, user, provider, model_id)
        turn = Turn(services, job, turn_id, user, session_id, req.message, api, request_id)
        services.turns.add(turn)
    return turn


def _session_job(services, req: ChatRequest, user: str, provider, model_id: str) -> tuple[str, Job]:
    """The session (created when the request names none) and the job: its history + the message."""
    if req.session_id is None:
        session_id = services.sessions.create(user)["id"]
    elif services.sessions.exists(req.session_id, user):
        session_id = req.session_id
        if req.replace_turn:  # asked again: the model must not see the answer being replaced
            services.sessions.rewind(session_id, req.replace_turn, user)
    else:
        raise Refused("session_not_found", f"no session {req.session_id!r} (it may have expired)")
    history = [m for m in services.sessions.history(session_id, user) if m["content"]]
    messages = [ChatMessage("system", req.system)] if req.system else []
    messages += [ChatMessage(m["role"], m["content"])
                 for m in history[-services.settings.max_history_messages:]]
    messages.append(ChatMessage("user", req.message))
    options = GenerationOptions(
        max_tokens=req.max_tokens or services.settings.default_max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        seed=req.seed,
        hidden_states=req.return_hidden_states,
    )
    return session_id, Job(provider, model_id, messages, options)


def start_stateless_turn(services, model: str, messages: list[ChatMessage], options: GenerationOptions,
                         user: str = "anonymous", api: str = "openai", request_id: str = "") -> "Turn":
    """A turn whose whole conversation comes with the request (the /v1 APIs): nothing is saved."""
    provider, model_id = services.models.resolve(model)
    if options.tools and options.tool_choice != "none" and (why := provider.refuses_tools(model_id, options.tool_choice)):
        raise Refused("invalid_request_error", why)
    limit = services.settings.max_history_messages
    if len(messages) > limit + 1:
        raise Refused("invalid_request_error", f"messages: {len(messages)} messages; the limit is {limit + 1}")
    turn_id = uuid.uuid4().hex
    with services.turns.reserve(user, turn_id):
        turn = Turn(services, Job(provider, model_id, messages, options), turn_id, user, api=api,
                    request_id=request_id)
        services.turns.add(turn)
    return turn


class Turn:
    def __init__(self, services, job: Job, turn_id: str, user: str = "anonymous", session_id: str | None = None,
                 message: str = "", api: str = "sse", request_id: str = ""):
        self.services = services
        self.job = job
        self.user = user
        self.session_id = session_id
        self.message = message
        self.api = api  # which protocol started it: a metrics label
        self.request_id = request_id
        self.model = f"{job.provider.name}/{job.model}"
        self.id = turn_id
        self.log = services.turns.open_log(turn_id)
        self.created = time.perf_counter()
        self.ended_at: float | None = None  # monotonic
        self.status = "running"  # then complete | cancelled | error | interrupted
        self.error: ProviderError | None = None
        self.prompt_tokens: int | None = None  # known once the provider reports it
        self.pieces: list[str] = []  # the answer's text
        self.reasoning: list[str] = []
        self.tool_calls: list[dict] = []  # {index, id, name, arguments}, in the order they began
        self.open_calls: dict[int, dict] = {}  # the calls not yet ended, by the upstream's index
        self.splitter = ReasoningSplitter(services.settings.reasoning_tags)
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.stage = "new"  # then waiting (submitted), running (the model took it), ended
        self._ending = threading.Lock()
        self._interrupted = False

    @property
    def running(self) -> bool:
        return self.ended_at is None

    def cancel(self) -> None:
        """Stop the model within one decode step; the turn ends `cancelled` with what it wrote."""
        self.job.cancel.set()

    @property
    def cancelling(self) -> bool:
        return self.job.cancel.is_set()

    def interrupt(self) -> None:
        self._interrupted = True
        self.job.cancel.set()

    def run(self) -> None:
        """The pump: the provider's output into the log, until the turn ends. A store that fails
        under it (Redis gone for good) stops the model and frees the user's slot; readers of a
        log they cannot reach have ended already."""
        with self._ending:
            self._move_to("waiting")
        self.services.engine.submit(self.job)
        try:
            self._pump()
        except Exception:
            log.exception("turn %s: its log or session could not be written; stopping it", self.id)
            self.job.cancel.set()
            with self._ending:
                self.status, self.ended_at = "error", time.monotonic()
                self._move_to("ended")

    def _pump(self) -> None:
        self.log.append("start", {"session_id": self.session_id, "turn_id": self.id, "model": self.model})
        while self.running:
            item = self.job.channel.get()
            with self._ending:
                self._move_to("running")
            match item:
                case Prompt(tokens):
                    self.prompt_tokens = tokens
                case Piece(text):
                    for kind, part in self.splitter.feed(text):
                        self.emit(kind, part)
                case Reasoning(text):
                    self.emit("reasoning", text)
                case ToolCallPart() as part:
                    self.tool_call(part)
                case Finish() as finish:
                    for kind, part in self.splitter.flush():
                        self.emit(kind, part)
                    self.prompt_tokens = finish.prompt_tokens
                    if self._interrupted:
                        self.end("interrupted", interrupted())
                    else:
                        self.end("cancelled" if finish.reason == "cancelled" else "complete", finish=finish)
                case Failure(error):
                    self.end("error", error)

    def emit(self, kind: str, text: str = "", **data) -> None:
        """A piece of the reply into the log: `token` (answer text), `reasoning`, or a tool call's
        `tool_call_start`, `tool_call_delta`, `tool_call_end`."""
        with self._ending:
            if not self.running:  # a shutdown may have ended the turn already
                return
            now = time.perf_counter()
            if kind != "tool_call_end":
                gap = metrics.TIME_TO_FIRST_TOKEN if self.first_at is None else metrics.INTER_TOKEN_LATENCY
                gap.labels(self.model, self.api).observe(now - (self.last_at or self.created))
                self.first_at, self.last_at = self.first_at or now, now
            if kind == "token":
                self.pieces.append(text)
                self.log.append("token", {"token": text, "count": len(self.pieces)})
            elif kind == "reasoning":
                self.reasoning.append(text)
                self.log.append("reasoning", {"reasoning": text})
            else:
                self.log.append(kind, data)

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
            self.emit("tool_call_start", index=call["index"], id=call["id"], name=call["name"])
        if part.arguments:
            call["arguments"] += part.arguments
            self.emit("tool_call_delta", index=call["index"], arguments=part.arguments)

    def _end_call(self, upstream_index: int) -> None:
        self.emit("tool_call_end", index=self.open_calls.pop(upstream_index)["index"])

    def _end_tool_calls(self) -> None:
        """The reply is over: every call still open is complete, in the order they began."""
        for upstream_index in sorted(self.open_calls, key=lambda i: self.open_calls[i]["index"]):
            self._end_call(upstream_index)

    def end(self, status: str, error: ProviderError | None = None, finish: Finish | None = None) -> None:
        """Save the exchange and record its usage, then write the final event; once, whoever calls
        first (the pump, or a shutdown that cannot wait for the model)."""
        self._end_tool_calls()
        with self._ending:
            if not self.running:
                return
            self.status, self.error = status, error
            if self.session_id:
                reply = {"role": "assistant", "content": "".join(self.pieces), "tokens": finish and finish.completion_tokens,
                         "status": status, "model": self.model, "turn_id": self.id}
                if self.reasoning:
                    reply["reasoning"] = "".join(self.reasoning)
                if self.tool_calls:
                    reply["tool_calls"] = [{k: c[k] for k in ("id", "name", "arguments")} for c in self.tool_calls]
                self.services.sessions.append(
                    self.session_id,
                    {"role": "user", "content": self.message, "tokens": finish and finish.prompt_tokens},
                    reply, user=self.user)
            self.ended_at = time.monotonic()  # the user's slot is free from here
            self._move_to("ended")
            try:
                self._account(finish)
            except Exception:  # the reply is saved; losing its figures must not fail it
                log.exception("turn %s: recording its usage failed", self.id)
            if error:
                self.log.append("error", {"error": {"type": error.type, "message": error.message}})
            else:
                self.log.append("done", self._stats(finish))

    def _move_to(self, stage: str) -> None:
        """waiting -> running -> ended, counted in the running and waiting gauges."""
        order = ("new", "waiting", "running", "ended")
        if order.index(stage) <= order.index(self.stage):
            return
        gauges = {"waiting": metrics.REQUESTS_WAITING, "running": metrics.REQUESTS_RUNNING}
        if self.stage in gauges:
            gauges[self.stage].labels(self.model).dec()
        if stage in gauges:
            gauges[stage].labels(self.model).inc()
        if stage == "running":
            metrics.QUEUE_TIME.labels(self.model, self.api).observe(time.perf_counter() - self.created)
        self.stage = stage

    def _account(self, finish: Finish | None) -> None:
        """The turn's figures: metrics, the usage store, one log line."""
        seconds = time.perf_counter() - self.created
        reason = finish.reason if finish else "interrupted" if self.status == "interrupted" else "error"
        prompt = (finish.prompt_tokens if finish else self.prompt_tokens) or 0
        completion = finish.completion_tokens if finish else len(self.pieces)
        labels = (self.model, self.api)
        metrics.E2E_LATENCY.labels(*labels).observe(seconds)
        metrics.REQUESTS_FINISHED.labels(*labels, reason).inc()
        metrics.PROMPT_TOKENS.labels(*labels).inc(prompt)
        metrics.GENERATION_TOKENS.labels(*labels).inc(completion)
        self.services.usage.record(TurnUsage(self.user, self.model, prompt, completion, seconds * 1000, time.time()))
        fields = {"request_id": self.request_id, "turn_id": self.id, "user": self.user, "model": self.model,
                  "api": self.api, "status": self.status, "finish_reason": reason, "prompt_tokens": prompt,
                  "completion_tokens": completion, "duration_ms": round(seconds * 1000, 1),
                  "ttft_ms": round((self.first_at - self.created) * 1000, 1) if self.first_at else None}
        if self.error:
            fields["error"] = f"{self.error.type}: {self.error.message}"
        if self.services.settings.log_content:
            fields.update(message=self.message, reply="".join(self.pieces))
        log.info("turn finished", extra=fields)

    def _stats(self, finish: Finish) -> dict:
        now = time.perf_counter()
        first_at = self.first_at
        decode_seconds = now - first_at if first_at else 0.0
        return {
            "done": True,
            "tokens": finish.completion_tokens,
            "finish_reason": finish.reason,
            "ttft_ms": round((first_at - self.created) * 1000, 1) if first_at else None,
            "duration_ms": round((now - self.created) * 1000, 1),
            "tokens_per_second": round((finish.completion_tokens - 1) / decode_seconds, 1)
            if finish.completion_tokens > 1 and decode_seconds > 0 else None,
            "usage": {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens,
                      "cached_tokens": finish.cached_tokens, **({"counted_by": "rill"} if finish.counted else {})},
            **finish.extra,
        }

    def collect(self) -> tuple[str, dict]:
        """Read the turn to its end (non-streaming): the reply and the `done` event's data."""
        for event in self.log.follow(keepalive=self.services.settings.keepalive_seconds):
            if event.kind == "error":
                raise self.error
            if event.kind == "done":
                return "".join(self.pieces), event.data
        raise ProviderError("the turn ended without a reply", type="model_error")


class Turns:
    """Running turns, and finished ones while they stay readable. A reaper cancels turns nobody
    has read for `orphan_seconds` and forgets finished ones after `retention_seconds`."""

    def __init__(self, settings):
        self.settings = settings
        self.lock = threading.Lock()  # green under eventlet, as it should be there
        self.by_id: dict[str, Turn] = {}
        self._started = False

    def running(self, user: str | None = None) -> list[Turn]:
        return [t for t in list(self.by_id.values()) if t.running and (user is None or t.user == user)]

    def open_log(self, turn_id: str) -> TurnLog:
        return TurnLog(turn_id)

    @contextlib.contextmanager
    def reserve(self, user: str, turn_id: str):
        """Check the user's running-turn cap and the id, and hold them until add()."""
        with self.lock:
            self.check(user, turn_id)
            yield

    def check(self, user: str, turn_id: str | None = None) -> None:
        limit = self.settings.max_concurrent_turns
        if len(self.running(user)) >= limit:
            raise Refused("too_many_turns",
                           f"{limit} replies are already running for you; wait for one to finish or cancel it")
        if turn_id is not None and turn_id in self.by_id:
            raise Refused("turn_exists", f"turn {turn_id!r} already exists; choose another turn_id")

    def start(self) -> None:
        """The reaper (the server starts it; the first turn does where no server runs)."""
        if not self._started:
            self._started = True
            spawn(self._reap_forever)

    def add(self, turn: Turn) -> None:
        self.by_id[turn.id] = turn
        self.start()
        spawn(turn.run)

    def get(self, turn_id: str, user: str) -> Turn | None:
        """A running or retained turn of this user's; None for anyone else's."""
        turn = self.by_id.get(turn_id)
        return turn if turn is not None and turn.user == user else None

    def reap(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for turn in list(self.by_id.values()):
            if turn.running and not turn.cancelling and \
                    turn.log.unread_for(now) >= self.settings.orphan_seconds:
                log.info("turn %s had no reader for %.0f s: cancelled", turn.id, turn.log.unread_for(now))
                metrics.ORPHAN_CANCELS.inc()
                turn.cancel()
            elif not turn.running and now - turn.ended_at >= self.settings.turn_retention_seconds:
                self.by_id.pop(turn.id, None)

    def _reap_forever(self) -> None:
        while True:
            time.sleep(min(1.0, self.settings.orphan_seconds / 4))
            try:
                self.reap()
            except Exception:
                log.exception("reaping turns failed")

    def interrupt_all(self, grace_seconds: float) -> None:
        """Shutting down: every running turn ends `interrupted`, saved with what it wrote."""
        turns = self.running()
        for turn in turns:
            turn.interrupt()
        deadline = time.monotonic() + grace_seconds
        while any(t.running for t in turns) and time.monotonic() < deadline:
            time.sleep(0.05)
        for turn in turns:  # a model that did not stop in time: end it without waiting
            turn.end("interrupted", interrupted())
