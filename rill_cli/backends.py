"""Streaming one reply from a server, the same way for each kind: `stream()` yields the new text
as it comes and fills in a Reply; `stop()` ends it on the server.

- Rill through its app API: the server keeps the conversation (session), the client picks the
  turn id so it can cancel before the first byte, and a dropped connection resumes the turn
  from the last event it had (`GET /api/chat/turns/<id>/events`, `Last-Event-ID`). The tools it
  runs (MCP) come as ToolSteps among the text: a call, a call that asks first (answer it with
  `approve()`), a result.
- Any OpenAI- or Anthropic-compatible server through the official SDKs: the client keeps the
  messages, and closing the stream is what stops the reply there.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import BinaryIO
from dataclasses import dataclass, field

import httpx2

from .config import Backend
from .conversation import Conversation
from .errors import ClientError, http_error
from .sse import SSEDecoder

RESUME_SECONDS = 60.0  # how long a dropped Rill stream keeps trying to resume
CANCEL_RETRY_SECONDS = 2.0  # how long a cancel may wait for a just-sent request's turn to exist
READ_TIMEOUT = 60.0  # Rill pings every 15 s while a reply waits: silence this long is a dead link


@dataclass
class Reply:
    """One reply's text and figures (time to first token and tokens/s as the client saw them;
    token counts as the server reports them)."""
    text: str = ""
    started: float = field(default_factory=time.monotonic)
    first_at: float | None = None
    ended: float | None = None
    pieces: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    turn_id: str | None = None
    seq: int = -1  # the last event had (Rill)

    def add(self, piece: str) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()
        self.text += piece
        self.pieces += 1

    def stats(self) -> str:
        end = self.ended or time.monotonic()
        parts = []
        if self.first_at is not None:
            parts.append(f"TTFT {(self.first_at - self.started) * 1000:.0f} ms")
            tokens = self.completion_tokens or self.pieces
            if tokens > 1 and end > self.first_at:
                parts.append(f"{(tokens - 1) / (end - self.first_at):.1f} tokens/s")
        if self.prompt_tokens is not None or self.completion_tokens is not None:
            parts.append(f"{self.prompt_tokens if self.prompt_tokens is not None else '?'} prompt + "
                         f"{self.completion_tokens if self.completion_tokens is not None else '?'} completion tokens")
        parts.append(f"{end - self.started:.1f} s")
        if self.finish_reason:
            parts.append(self.finish_reason)
        return " · ".join(parts)


@dataclass
class ToolStep:
    """A tool call Rill runs, as the terminal shows it: `call` (its arguments are complete), `ask`
    (it waits for the user's approval), `result` (what the tool answered)."""
    kind: str
    id: str
    name: str
    arguments: str = ""
    content: str = ""
    is_error: bool = False


class RillBackend:
    def __init__(self, url: str, token: str | None, model: str | None, notify: Callable[[str], None]):
        self.url = url.rstrip("/")
        self.model = model
        self.notify = notify
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx2.Client(headers=headers, timeout=httpx2.Timeout(10.0, read=READ_TIMEOUT))

    def upload(self, name: str, data: BinaryIO) -> dict:
        """A file for the next question (POST /api/files): {id, name, type, size, ...}."""
        try:
            response = self.http.post(f"{self.url}/api/files", files={"file": (name, data)},
                                      timeout=httpx2.Timeout(10.0, read=READ_TIMEOUT, write=READ_TIMEOUT))
        except httpx2.TransportError as exc:
            raise ClientError(f"cannot reach Rill at {self.url} ({exc})")
        if response.status_code != 201:
            self._check(response, resuming=False)
        return response.json()

    def stream(self, conversation: Conversation, message: str, reply: Reply, files: tuple[str, ...] = ()
               ) -> Iterator[str | ToolStep]:
        reply.turn_id = uuid.uuid4().hex
        calls: dict[int, ToolStep] = {}  # this reply's tool calls, by index
        body = {"message": message, "turn_id": reply.turn_id, "session_id": conversation.session_id,
                "model": conversation.model or self.model, "system": conversation.system, "files": list(files) or None,
                "mcp_servers": conversation.tools}
        body = {k: v for k, v in body.items() if v is not None}
        method, target, options = "POST", f"{self.url}/api/chat/stream", {"json": body}
        lost_since = None
        while True:
            try:
                with self.http.stream(method, target, **options) as response:
                    if response.status_code == 204:  # a resume that already had everything
                        return
                    self._check(response, resuming=lost_since is not None)
                    for event in self._events(response):
                        lost_since = None
                        if (shown := self._take(event, conversation, reply, calls)) is not None:
                            yield shown
                        if event["kind"] in ("done", "error"):
                            return
            except httpx2.ConnectError as exc:
                if lost_since is None and reply.seq < 0:
                    raise ClientError(f"cannot reach Rill at {self.url} ({exc})")
            except httpx2.TransportError:
                pass
            except StoreUnavailable:
                pass
            # the stream broke before its last event: follow the turn again from where it was
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > RESUME_SECONDS:
                raise ClientError(f"lost the connection to {self.url}; gave up resuming after "
                                  f"{RESUME_SECONDS:.0f} s (turn {reply.turn_id})")
            self.notify(f"connection lost; resuming from event {reply.seq + 1}")
            time.sleep(1.0)
            method, target = "GET", f"{self.url}/api/chat/turns/{reply.turn_id}/events"
            options = {"headers": {"Last-Event-ID": str(reply.seq)} if reply.seq >= 0 else {}}

    def _events(self, response) -> Iterator[dict]:
        decoder = SSEDecoder()
        for chunk in response.iter_bytes():
            for event in decoder.feed(chunk):
                data = json.loads(event.data)
                if event.type == "error" and not event.id and data["error"]["type"] == "store_unavailable":
                    raise StoreUnavailable()  # not part of the turn: resume once the store is back
                yield {"kind": event.type, "seq": int(event.id) if event.id else None, **data}

    def _take(self, event: dict, conversation: Conversation, reply: Reply, calls: dict[int, ToolStep]
              ) -> str | ToolStep | None:
        """Record an event; what it shows, if anything (a token's text, a tool step)."""
        if event["seq"] is not None:
            if event["seq"] <= reply.seq:
                return None  # already had it
            reply.seq = event["seq"]
        kind = event["kind"]
        if kind == "start":
            conversation.session_id = event["session_id"]
        elif kind == "token":
            reply.add(event["token"])
            return event["token"]
        elif kind == "tool_call_start":
            calls[event["index"]] = ToolStep("call", event["id"], event["name"])
        elif kind == "tool_call_delta":
            calls[event["index"]].arguments += event["arguments"]
        elif kind in ("tool_call_end", "tool_approval_request", "tool_result"):
            call = calls[event["index"]]
            step = {"tool_call_end": "call", "tool_approval_request": "ask", "tool_result": "result"}[kind]
            return ToolStep(step, call.id, call.name, call.arguments, event.get("content", ""),
                            event.get("is_error", False))
        elif kind == "done":
            reply.ended = time.monotonic()
            reply.finish_reason = event["finish_reason"]
            usage = event.get("usage") or {}
            reply.prompt_tokens, reply.completion_tokens = usage.get("prompt_tokens"), event["tokens"]
        elif kind == "error":
            raise ClientError(f"{event['error']['type']}: {event['error']['message']}")
        return None

    def _check(self, response, resuming: bool) -> None:
        if response.status_code == 200:
            return
        response.read()
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200] or response.reason_phrase
        if resuming and response.status_code == 404:
            raise ClientError(f"lost the connection and the turn is gone from the server: {message}")
        raise http_error(response.status_code, message, response.headers.get("Retry-After"))

    def mcp_servers(self) -> list[dict]:
        """The MCP servers the Rill server runs tools of (GET /api/mcp)."""
        try:
            response = self.http.get(f"{self.url}/api/mcp", timeout=httpx2.Timeout(10.0, read=READ_TIMEOUT))
        except httpx2.HTTPError as exc:
            raise ClientError(f"cannot reach Rill at {self.url} ({exc})")
        self._check(response, resuming=False)
        return response.json()["servers"]

    def approve(self, reply: Reply, call_id: str, approved: bool) -> None:
        """Run (approved) or decline a call that asks first; the turn goes on either way."""
        try:
            response = self.http.post(f"{self.url}/api/chat/turns/{reply.turn_id}/approve",
                                      json={"tool_call_id": call_id, "approved": approved})
        except httpx2.HTTPError as exc:
            raise ClientError(f"cannot reach Rill at {self.url} ({exc})")
        if response.status_code != 202:
            self._check(response, resuming=False)

    def stop(self, reply: Reply) -> None:
        """Cancel the turn on the server (the partial reply is saved there as cancelled). A Ctrl-C
        right after the request went out can come before the server has made the turn: until its
        first event arrives, a cancel that finds no turn is sent again for a moment."""
        if not reply.turn_id:
            return
        deadline = time.monotonic() + CANCEL_RETRY_SECONDS
        while True:
            try:
                response = self.http.post(f"{self.url}/api/chat/turns/{reply.turn_id}/cancel")
            except httpx2.HTTPError as exc:
                self.notify(f"could not cancel the reply on the server: {exc}")
                return
            if response.status_code != 404 or reply.seq >= 0 or time.monotonic() > deadline:
                return
            time.sleep(0.05)


class StoreUnavailable(Exception):
    """The server lost its store for a moment; the turn's log is still there."""


def sdk_error(sdk, exc: Exception, url: str) -> ClientError:
    """An openai or anthropic error (the SDKs share their shape) as one line."""
    if isinstance(exc, sdk.APIConnectionError):
        return ClientError(f"cannot reach {url} ({exc.__cause__ or exc})")
    if isinstance(exc, sdk.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = body.get("error", body)
        message = detail.get("message") if isinstance(detail, dict) else None
        return http_error(exc.status_code, message or exc.message, exc.response.headers.get("retry-after"))
    return ClientError(str(exc))


class OpenAIBackend:
    def __init__(self, url: str, key: str | None, model: str | None, notify: Callable[[str], None]):
        import openai  # here, not at the top: the SDKs take a second to import

        self.sdk = openai
        self.url = url
        self.model = model
        self.client = openai.OpenAI(base_url=url, api_key=key or "none", max_retries=0,
                                    timeout=httpx2.Timeout(10.0, read=READ_TIMEOUT))

    def _model(self, conversation: Conversation) -> str:
        if conversation.model or self.model:
            return conversation.model or self.model
        try:
            return self.client.models.list().data[0].id
        except (self.sdk.APIError, IndexError) as exc:
            raise ClientError(f"no model given and {self.url}/models lists none ({exc})")

    def stream(self, conversation: Conversation, message: str, reply: Reply) -> Iterator[str]:
        system = [{"role": "system", "content": conversation.system}] if conversation.system else []
        question = {"role": "user", "content": message}
        try:
            chunks = self.client.chat.completions.create(
                model=self._model(conversation), messages=[*system, *conversation.messages, question],
                stream=True, stream_options={"include_usage": True})
            with chunks:
                for chunk in chunks:
                    if chunk.usage:
                        reply.prompt_tokens = chunk.usage.prompt_tokens
                        reply.completion_tokens = chunk.usage.completion_tokens
                    for choice in chunk.choices:
                        if choice.delta.content:
                            reply.add(choice.delta.content)
                            yield choice.delta.content
                        if choice.finish_reason:
                            reply.finish_reason = choice.finish_reason
            reply.ended = time.monotonic()
        except self.sdk.APIError as exc:
            raise sdk_error(self.sdk, exc, self.url)
        finally:
            keep(conversation, question, reply)

    def stop(self, reply: Reply) -> None:
        """Closing the stream (done when stream() is interrupted) stops the reply on the server."""


class AnthropicBackend:
    MAX_TOKENS = 4096  # the Messages API needs one

    def __init__(self, url: str, key: str | None, model: str | None, notify: Callable[[str], None]):
        import anthropic

        self.sdk = anthropic
        self.url = url
        self.model = model
        self.client = anthropic.Anthropic(base_url=url, api_key=key or "none", max_retries=0,
                                          timeout=httpx2.Timeout(10.0, read=READ_TIMEOUT))

    def stream(self, conversation: Conversation, message: str, reply: Reply) -> Iterator[str]:
        model = conversation.model or self.model
        if not model:
            raise ClientError("anthropic backends need a model: set `model` in the config or use --model")
        question = {"role": "user", "content": message}
        extra = {"system": conversation.system} if conversation.system else {}
        try:
            with self.client.messages.stream(model=model, max_tokens=self.MAX_TOKENS,
                                             messages=[*conversation.messages, question], **extra) as stream:
                for text in stream.text_stream:
                    reply.add(text)
                    yield text
                final = stream.get_final_message()
            reply.ended = time.monotonic()
            reply.prompt_tokens, reply.completion_tokens = final.usage.input_tokens, final.usage.output_tokens
            reply.finish_reason = final.stop_reason
        except self.sdk.APIError as exc:
            raise sdk_error(self.sdk, exc, self.url)
        finally:
            keep(conversation, question, reply)

    def stop(self, reply: Reply) -> None:
        """Closing the stream (done when stream() is interrupted) stops the reply on the server."""


def keep(conversation: Conversation, question: dict, reply: Reply) -> None:
    """The exchange joins the history the client keeps, a stopped reply's partial text too."""
    if reply.text:
        conversation.messages += [question, {"role": "assistant", "content": reply.text}]


KINDS = {"rill": RillBackend, "openai": OpenAIBackend, "anthropic": AnthropicBackend}


def connect(backend: Backend, notify: Callable[[str], None]):
    return KINDS[backend.type](backend.url, backend.key(), backend.model, notify)
