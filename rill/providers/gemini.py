"""Google Gemini through the google-genai SDK: `gemini/<model>`, any model name passed on.

`stream` runs as a green thread under eventlet (see streamed.py for why not in an OS
thread). The SDK is imported and the client built in __init__ (only when a key is set), in
create_app, before the server serves. The API version is pinned to v1beta, the one Gemini's REST
docs describe (google-genai 3.4 defaults to v1). Retries are pinned off (attempts=1) so a failure
reaches the client at once: the SDK's retry options, once given, default to 5 attempts over
~15 s. Cancellation is checked per chunk, so a stalled upstream is let go at its next chunk or at
the read timeout.
"""
from __future__ import annotations

import json
import uuid
from typing import Iterator

from ..config import comma_list
from .base import CancelToken, ChatMessage, Finish, GenerationOptions, ProviderError, Reasoning, ToolCallPart
from .streamed import Streamed

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"
API_VERSION = "v1beta"
REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}  # anything else (SAFETY, ...) ends as "stop"


def build_request(model: str, messages: list[ChatMessage], options: GenerationOptions) -> dict:
    """generate_content_stream's arguments as plain dicts."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    config = {"temperature": options.temperature, "top_p": options.top_p,
              "max_output_tokens": options.max_tokens,
              "automatic_function_calling": {"disable": True}}  # one plain request, no tool loop
    if options.tools:
        config["tools"] = [{"function_declarations": [
            {"name": t.name, "description": t.description, "parameters": t.parameters} for t in options.tools]}]
        choice = options.tool_choice
        mode = {"auto": "AUTO", "none": "NONE"}.get(choice, "ANY")
        config["tool_config"] = {"function_calling_config": {"mode": mode, **(
            {"allowed_function_names": [choice]} if mode == "ANY" and choice != "required" else {})}}
    if system:
        config["system_instruction"] = system
    if options.stop:
        config["stop_sequences"] = list(options.stop)
    if options.seed is not None:
        config["seed"] = options.seed
    if fmt := options.output_format:
        config["response_mime_type"] = "application/json"
        if fmt.kind == "json_schema":
            config["response_json_schema"] = fmt.schema
    return {"model": model, "contents": contents(messages), "config": config}


def contents(messages: list[ChatMessage]) -> list[dict]:
    """The conversation in Gemini's shape: images as inline_data parts before the text, the model's
    calls as functionCall parts, their results
    (consecutive tool messages together) as one user turn of functionResponse parts."""
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    out: list[dict] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            part = {"function_response": {"name": m.name or names.get(m.tool_call_id, "tool"),
                                          "response": {"result": m.content}}}
            if out and out[-1].get("tool_results"):
                out[-1]["parts"].append(part)
            else:
                out.append({"role": "user", "parts": [part], "tool_results": True})
            continue
        parts = [{"inline_data": {"mime_type": image.media_type, "data": image.data}} for image in m.images]
        parts += [{"text": m.content}] if m.content or not (m.tool_calls or m.images) else []
        parts += [{"function_call": {"name": c.name, "args": json.loads(c.arguments or "{}")}} for c in m.tool_calls]
        out.append({"role": "model" if m.role == "assistant" else "user", "parts": parts})
    for content in out:
        content.pop("tool_results", None)
    return out


class GeminiProvider(Streamed):
    name = "gemini"
    passthrough = True

    def refuses_schemas(self, model: str, options) -> str | None:
        if strict := [t.name for t in options.tools if t.strict]:
            return (f"gemini/{model} cannot hold a call to its tool's parameters (Gemini has no strict function "
                    f"calling): {', '.join(strict)}; send strict false")
        return None

    def __init__(self, settings):
        self.base_url = settings.gemini_base_url or DEFAULT_BASE_URL
        self.timeout = settings.upstream_timeout_seconds
        self.model_ids = comma_list(settings.gemini_models)
        self.client = None
        if settings.gemini_api_key:
            from google import genai
            from google.genai import types

            self.client = genai.Client(vertexai=False, api_key=settings.gemini_api_key, http_options=types.HttpOptions(
                base_url=self.base_url, api_version=API_VERSION, timeout=int(self.timeout * 1000),
                retry_options=types.HttpRetryOptions(attempts=1)))

    def models(self) -> list[dict]:
        return [{"id": m, "state": "ready"} for m in self.model_ids]

    def unavailable(self) -> str | None:
        return None if self.client else "the gemini provider needs an API key: set RILL_GEMINI_API_KEY"

    def load(self) -> None:
        """Build the SDK's request and response models once, now: their first use rebuilds
        pydantic models under a lock, which would stall the first requests (and, in threading
        mode, everything waiting on the GIL) for a second or two."""
        if self.client is None:
            return
        from google.genai import types

        request = build_request("m", [ChatMessage("system", "s"), ChatMessage("user", "u")],
                                GenerationOptions(stop=("x",), seed=1))
        types.GenerateContentConfig.model_validate(request["config"])
        types.Content.model_validate(request["contents"][0])
        types.GenerateContentResponse.model_validate({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finish_reason": "STOP"}],
            "usage_metadata": {"prompt_token_count": 1, "candidates_token_count": 1}})

    def stream(self, model: str, messages: list[ChatMessage], options: GenerationOptions,
               cancel: CancelToken) -> Iterator[str | Finish]:
        yield from self._generate(build_request(model, messages, options), cancel)

    def _generate(self, request: dict, cancel: CancelToken) -> Iterator[str | Finish]:
        from google.genai import errors

        if cancel.is_set():
            yield Finish("cancelled", 0, 0)
            return
        reason = usage = blocked = None
        calls = 0
        chunks = self.client.models.generate_content_stream(**request)
        try:
            for chunk in chunks:
                usage = chunk.usage_metadata or usage
                if chunk.prompt_feedback and chunk.prompt_feedback.block_reason:
                    blocked = chunk.prompt_feedback.block_reason
                if cancel.is_set():
                    reason = "cancelled"
                    break
                candidate = chunk.candidates[0] if chunk.candidates else None
                if candidate and candidate.finish_reason:
                    finish = candidate.finish_reason
                    reason = REASONS.get(str(getattr(finish, "value", finish)), "stop")
                for part in (candidate.content.parts or []) if candidate and candidate.content else []:
                    if part.function_call:
                        call = part.function_call
                        yield ToolCallPart(calls, call.id or f"call_{uuid.uuid4().hex[:24]}", call.name,
                                           json.dumps(call.args or {}))
                        calls += 1
                    elif part.text and part.thought:
                        yield Reasoning(part.text)
                    elif part.text:
                        yield part.text
        except errors.APIError as exc:
            status = f"{exc.code} {exc.status}" if exc.status else f"{exc.code}"
            raise ProviderError(f"Gemini answered HTTP {status}: {exc.message}", type="upstream_error") from exc
        except Exception as exc:
            message = self._describe(exc)
            if message is None:
                raise
            raise ProviderError(message, type="upstream_error") from exc
        finally:
            chunks.close()  # on cancel this drops the HTTP connection, which stops the upstream
        if reason is None:
            why = f"Gemini blocked the prompt ({getattr(blocked, 'value', blocked)})" if blocked else \
                "the Gemini stream ended without a finish reason"
            raise ProviderError(why, type="upstream_error")
        if calls and reason == "stop":
            reason = "tool_calls"
        yield Finish(reason, getattr(usage, "prompt_token_count", None) or 0,
                     getattr(usage, "candidates_token_count", None) or 0,
                     getattr(usage, "cached_content_token_count", None) or 0)

    def _describe(self, exc: Exception) -> str | None:
        """A clear message for transport failures (httpx or httpx2, whichever the SDK uses)."""
        kinds = {c.__name__ for c in type(exc).__mro__}
        if "TimeoutException" in kinds:
            return f"Gemini at {self.base_url} did not answer within {self.timeout:g} s ({type(exc).__name__})"
        if "ConnectError" in kinds:
            return f"cannot connect to Gemini at {self.base_url}: {exc}"
        if "HTTPError" in kinds:
            return f"the Gemini stream broke: {type(exc).__name__}: {exc}"
        if isinstance(exc, ValueError):  # the SDK's UnknownApiResponseError, pydantic's ValidationError
            return f"Gemini sent an answer that could not be read: {exc}"
        return None
