"""One chat turn: session history + message -> provider (in the engine) -> StreamEvents.

The turn owns the whole life of a reply: it measures the timings, turns a disconnect (the
consumer closing the generator) into cancellation, and saves the exchange to the session when
the turn ends, also when it was cancelled or failed, marked as such.
"""
from __future__ import annotations

import itertools
import time
import uuid
from typing import Iterator

from ..errors import ApiError
from ..providers.base import ChatMessage, Finish, GenerationOptions, Prompt, ProviderError
from ..providers.engine import END, Empty, Job
from ..schemas import ChatRequest
from .events import StreamEvent


def start_turn(services, req: ChatRequest, user: str = "anonymous") -> "Turn":
    """A turn of a session (the app's routes). Everything that can be refused with a 4xx is
    checked here, before any byte of a stream is sent."""
    provider, model_id = services.models.resolve(req.model)
    with services.lock:  # the concurrency check and the turn's registration go together
        check_concurrency(services, user)
        session_id, job = _session_job(services, req, user, provider, model_id)
        return Turn(services, job, user, session_id, req.message)


def _session_job(services, req: ChatRequest, user: str, provider, model_id: str) -> tuple[str, Job]:
    """The session (created when the request names none) and the job: its history + the message."""
    if req.session_id is None:
        session_id = services.sessions.create(user)["id"]
    elif services.sessions.exists(req.session_id, user):
        session_id = req.session_id
        if req.replace_turn:  # asked again: the model must not see the answer being replaced
            services.sessions.rewind(session_id, req.replace_turn, user)
    else:
        raise ApiError(404, "session_not_found", f"no session {req.session_id!r} (it may have expired)")
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
                         user: str = "anonymous") -> "Turn":
    """A turn whose whole conversation comes with the request (the /v1 APIs): nothing is saved."""
    provider, model_id = services.models.resolve(model)
    limit = services.settings.max_history_messages
    if len(messages) > limit + 1:
        raise ApiError(400, "invalid_request_error", f"messages: {len(messages)} messages; the limit is {limit + 1}")
    with services.lock:
        check_concurrency(services, user)
        return Turn(services, Job(provider, model_id, messages, options), user)


def check_concurrency(services, user: str) -> None:
    limit = services.settings.max_concurrent_turns
    if sum(1 for t in list(services.turns.values()) if t.user == user) >= limit:
        raise ApiError(429, "too_many_turns",
                       f"{limit} replies are already running for you; wait for one to finish or cancel it")


class Turn:
    """Registered as running from creation until release(): the route must make sure release()
    runs even if events() never starts (Flask's response.call_on_close does)."""

    def __init__(self, services, job: Job, user: str = "anonymous", session_id: str | None = None,
                 message: str = ""):
        self.services = services
        self.job = job
        self.user = user
        self.session_id = session_id
        self.message = message
        self.model = f"{job.provider.name}/{job.model}"
        self.id = uuid.uuid4().hex
        self.created = time.perf_counter()
        self.prompt_tokens: int | None = None  # known once the provider reports it
        self.error: ProviderError | None = None
        self.ended = False
        services.turns[self.id] = self

    def cancel(self) -> None:
        self.job.cancel.set()

    def release(self) -> None:
        """The turn is over (or was never consumed): stop the model, free the user's slot."""
        self.job.cancel.set()
        self.services.turns.pop(self.id, None)

    def events(self) -> Iterator[StreamEvent]:
        seq = itertools.count()
        event = lambda kind, data: StreamEvent(kind, data, self.id, next(seq))  # noqa: E731
        keepalive = self.services.settings.keepalive_seconds
        pieces: list[str] = []
        first_at = None
        self.services.engine.submit(self.job)
        try:
            yield event("start", {"session_id": self.session_id, "turn_id": self.id, "model": self.model})
            while True:
                try:
                    item = self.job.channel.get(timeout=keepalive)
                except Empty:
                    yield StreamEvent("ping", {}, self.id, -1)
                    continue
                if isinstance(item, Prompt):
                    self.prompt_tokens = item.tokens
                elif isinstance(item, str):
                    first_at = first_at or time.perf_counter()
                    pieces.append(item)
                    yield event("token", {"token": item, "count": len(pieces)})
                elif isinstance(item, Finish):
                    self.prompt_tokens = item.prompt_tokens
                    self._end(pieces, "cancelled" if item.reason == "cancelled" else "complete", item)
                    yield event("done", self._stats(item, first_at))
                    return
                else:
                    if item is END:
                        item = ProviderError("the model ended without finishing its reply", type="model_error")
                    self.error = item
                    self._end(pieces, "error", None)
                    yield event("error", {"error": {"type": item.type, "message": item.message}})
                    return
        finally:
            self._end(pieces, "cancelled", None)  # the client left: stop the model, keep the partial reply

    def _end(self, pieces: list[str], status: str, finish: Finish | None) -> None:
        """Save the exchange and free the turn, once, before the final event goes out: whoever
        reads the session after `done` finds the reply there."""
        if self.ended:
            return
        self.ended = True
        self.release()
        if self.session_id:
            self.services.sessions.append(
                self.session_id,
                {"role": "user", "content": self.message, "tokens": finish and finish.prompt_tokens},
                {"role": "assistant", "content": "".join(pieces), "tokens": finish and finish.completion_tokens,
                 "status": status, "model": self.model, "turn_id": self.id},
                user=self.user,
            )

    def _stats(self, finish: Finish, first_at: float | None) -> dict:
        now = time.perf_counter()
        decode_seconds = now - first_at if first_at else 0.0
        return {
            "done": True,
            "tokens": finish.completion_tokens,
            "finish_reason": finish.reason,
            "ttft_ms": round((first_at - self.created) * 1000, 1) if first_at else None,
            "duration_ms": round((now - self.created) * 1000, 1),
            "tokens_per_second": round((finish.completion_tokens - 1) / decode_seconds, 1)
            if finish.completion_tokens > 1 and decode_seconds > 0 else None,
            "usage": {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens},
            **finish.extra,
        }

    def collect(self) -> tuple[str, dict]:
        """Run the turn to the end (non-streaming): the reply and the `done` event's data."""
        pieces = []
        for ev in self.events():
            if ev.kind == "token":
                pieces.append(ev.data["token"])
            elif ev.kind == "error":
                raise ApiError(self.error.status, ev.data["error"]["type"], ev.data["error"]["message"])
            elif ev.kind == "done":
                return "".join(pieces), ev.data
        raise ApiError(502, "model_error", "the turn ended without a reply")
