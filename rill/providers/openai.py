"""An OpenAI-compatible upstream (OpenAI, vLLM, Ollama, a llama.cpp server) through the openai SDK.

`stream` runs as a green thread under eventlet (see streamed.py for why not in an OS
thread). Cancellation is checked between chunks, so an upstream that is silent (a long prefill)
notices a cancel only when its next chunk comes or the timeout (RILL_UPSTREAM_TIMEOUT_SECONDS)
ends it.
"""
from __future__ import annotations

import os
from typing import Iterator

from ..config import comma_list
from .base import (CancelToken, ChatMessage, Embeddings, Finish, GenerationOptions, ProviderError, Reasoning,
                   ToolCallPart)
from .streamed import Streamed
from .token_count import count_tokens
from .token_count import prepare as prepare_counting

FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}  # anything else (content_filter) is stop


def describe(exc: BaseException) -> str:
    """The root cause in words; an OSError by its strerror, which eventlet's green sockets leave
    as a bare "ECONNREFUSED" where plain sockets say "Connection refused"."""
    seen, depth = exc, 0
    while seen is not None and depth < 10:  # a chain may loop
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    cause = exc.__cause__ or exc
    return str(cause) or type(cause).__name__


def wire_message(m: ChatMessage) -> dict:
    """A message as the Chat Completions API takes it: images as image_url parts (data: URLs)
    before its text, tool calls and tool results included."""
    message = {"role": m.role, "content": m.content}
    if m.images:
        message["content"] = [{"type": "image_url", "image_url": {"url": image.data_url} | (
                                  {"detail": image.detail} if image.detail else {})} for image in m.images]
        if m.content:
            message["content"].append({"type": "text", "text": m.content})
    if m.tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in m.tool_calls]
        message["content"] = m.content or None
    if m.tool_call_id:
        message["tool_call_id"] = m.tool_call_id
    return message


class Reply:
    """What an upstream's reply has streamed so far, for its Finish: the upstream's usage, or where
    it sent none, Rill's count of the prompt and the reply (marked as such)."""

    def __init__(self, messages: list[ChatMessage]):
        self.messages = messages
        self.usage = None
        self.pieces = 0  # text and reasoning pieces
        self.text: list[str] = []  # everything the model wrote: text, reasoning, tool call arguments

    def add(self, item, text: str, piece: bool = True):
        self.text.append(text)
        self.pieces += piece
        return item

    def finish(self, reason: str) -> Finish:
        usage = self.usage
        if usage is None:
            prompt = "\n".join(m.content for m in self.messages)
            return Finish(reason, count_tokens(prompt, 0), count_tokens("".join(self.text), self.pieces), counted=True)
        details = getattr(usage, "prompt_tokens_details", None)
        return Finish(reason, usage.prompt_tokens, usage.completion_tokens, getattr(details, "cached_tokens", None) or 0)


class OpenAIProvider(Streamed):
    name = "openai"
    passthrough = True  # the upstream knows its own models; any `openai/<name>` is sent on

    def __init__(self, settings):
        self.base_url = settings.openai_base_url
        self.api_key = settings.openai_api_key
        self.timeout = settings.upstream_timeout_seconds
        self.listed = comma_list(settings.openai_models)
        self.client = None
        if self.api_key:  # the SDK (0.3 s to import) and one client, so connections are reused
            import openai

            self.client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                                        max_retries=0)  # a retry would hide the failure for seconds

    def models(self) -> list[dict]:
        return [{"id": name, "state": "ready"} for name in self.listed]

    def unavailable(self) -> str | None:
        if not self.api_key:
            return ("openai/... needs an API key: set RILL_OPENAI_API_KEY "
                    "(and RILL_OPENAI_BASE_URL for a server other than OpenAI)")
        return None

    def load(self) -> None:
        """The upstream is asked only when a request comes; the vocabulary that counts tokens for
        an upstream that reports none is read now."""
        if self.client is not None:
            prepare_counting()

    def stream(self, model: str, messages: list[ChatMessage], options: GenerationOptions,
               cancel: CancelToken) -> Iterator[str | Finish]:
        import httpx2
        import openai

        if cancel.is_set():
            yield Finish("cancelled", 0, 0)
            return
        request = dict(model=model, messages=[wire_message(m) for m in messages],
                       stream=True, stream_options={"include_usage": True}, max_tokens=options.max_tokens,
                       temperature=options.temperature, top_p=options.top_p)
        if options.tools:
            request["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                                  "parameters": t.parameters} | (
                                     {"strict": True} if t.strict else {})} for t in options.tools]
            choice = options.tool_choice
            request["tool_choice"] = choice if choice in ("auto", "none", "required") else {
                "type": "function", "function": {"name": choice}}
        if options.seed is not None:
            request["seed"] = options.seed
        if fmt := options.output_format:
            request["response_format"] = {"type": "json_object"} if fmt.kind == "json_object" else {
                "type": "json_schema", "json_schema": {"name": fmt.name, "description": fmt.description,
                                                       "schema": fmt.schema, "strict": fmt.strict}}
        if options.stop:
            request["stop"] = list(options.stop)
        reply = Reply(messages)
        reason, answered = None, False
        try:
            response = self.client.chat.completions.create(**request)
            answered = True
            with response:
                for chunk in response:
                    if cancel.is_set():
                        response.close()
                        yield reply.finish("cancelled")
                        return
                    reply.usage = chunk.usage or reply.usage
                    for choice in chunk.choices:
                        delta = choice.delta
                        if delta:
                            # reasoning: DeepSeek's name, and vLLM's / OpenRouter's (extra fields in the SDK)
                            if thought := getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None):
                                yield reply.add(Reasoning(thought), thought)
                            if delta.content:
                                yield reply.add(delta.content, delta.content)
                            for call in delta.tool_calls or ():
                                function = call.function
                                arguments = (function and function.arguments) or ""
                                yield reply.add(ToolCallPart(call.index, call.id, function and function.name, arguments),
                                                arguments, piece=False)
                        reason = choice.finish_reason or reason
        except (openai.OpenAIError, httpx2.HTTPError, OSError) as exc:
            raise self._failure(exc, reply.pieces, answered) from exc
        if reason is None:  # a close-delimited body cut short ends quietly, without an error
            raise ProviderError(f"the upstream stream broke off after {reply.pieces} pieces: it ended without a "
                                f"finish_reason", type="upstream_error")
        yield reply.finish(FINISH.get(reason, "stop"))

    def embed(self, model: str, inputs: list) -> Embeddings:
        import httpx2
        import openai

        try:
            reply = self.client.embeddings.create(model=model, input=inputs, encoding_format="float")
        except (openai.OpenAIError, httpx2.HTTPError, OSError) as exc:
            raise self._failure(exc, 0, False) from exc
        vectors = [item.embedding for item in sorted(reply.data, key=lambda item: item.index)]
        return Embeddings(vectors, reply.usage.prompt_tokens)

    def _failure(self, exc: Exception, pieces: int, answered: bool) -> ProviderError:
        """One clear sentence per way an upstream fails; `answered`: the response had begun."""
        import httpx2
        import openai

        why = describe(exc)
        if isinstance(exc, openai.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            message = f"upstream returned HTTP {exc.status_code}: {body.get('message') or exc.message}"
            if exc.status_code in (401, 403):
                message += " (check the key in RILL_OPENAI_API_KEY)"
        elif isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
            message = (f"the upstream stream broke off after {pieces} pieces: nothing arrived for "
                       f"{self.timeout:g} s" if answered else f"the upstream did not answer within {self.timeout:g} s")
        elif isinstance(exc, (openai.APIConnectionError, httpx2.TransportError, OSError)):
            message = (f"the upstream stream broke off after {pieces} pieces: {why}" if answered
                       else f"cannot reach the upstream at {self.base_url}: {why}")
        elif isinstance(exc, openai.APIError):  # an error event inside a 200 stream
            message = f"the upstream reported an error after {pieces} pieces: {exc.message}"
        else:
            message = f"the upstream request failed: {why}"
        return ProviderError(message, type="upstream_error")
