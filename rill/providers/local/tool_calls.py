"""Reading tool calls out of a local model's text, and writing tools into its prompt.

Chat templates with tool support (Qwen2.5, Hermes, SmolLM3 and most others) render the tools
into the prompt and have the model answer `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`;
that block becomes a call instead of text. A block that does not parse stays text, so nothing
the model wrote is lost.
"""
from __future__ import annotations

import json
import uuid

from ..base import ChatMessage, Tool, ToolCallPart
from ..tags import TagSplitter

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def template_tools(tools: tuple[Tool, ...]) -> list[dict]:
    """Tools as chat templates take them (the OpenAI shape)."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]


def template_message(m: ChatMessage) -> dict:
    """A message as chat templates take it: images as image parts before the text (a vision
    model's processor puts each image's tokens there), calls with parsed arguments, results with
    their call id."""
    out = {"role": m.role, "content": m.content}
    if m.images:
        out["content"] = [{"type": "image"} for _ in m.images] + ([{"type": "text", "text": m.content}] if m.content else [])
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": _parsed(c.arguments)}} for c in m.tool_calls]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    if m.name:
        out["name"] = m.name
    return out


def _parsed(arguments: str):
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return arguments


class ToolCallReader:
    """Turns a reply's text into text pieces and ToolCallParts, as it streams."""

    def __init__(self):
        self.tags = TagSplitter(OPEN, CLOSE)
        self.block: list[str] | None = None  # the text of an open <tool_call> block
        self.calls = 0

    def feed(self, text: str) -> list[str | ToolCallPart]:
        return self._read(self.tags.feed(text))

    def flush(self) -> list[str | ToolCallPart]:
        """The end of the reply: a block left open is read as if it were closed."""
        out = self._read(self.tags.flush())
        return out + self._call(closed=False) if self.block is not None else out

    def _read(self, parts: list[tuple[str, str]]) -> list[str | ToolCallPart]:
        out = []
        for kind, text in parts:
            if kind == "open":
                self.block = []
            elif kind == "inside":
                self.block.append(text)
            elif kind == "close":
                out += self._call(closed=True)
            else:
                out.append(text)
        return out

    def _call(self, closed: bool) -> list[str | ToolCallPart]:
        text, self.block = "".join(self.block), None
        try:
            call = json.loads(text)
            name, arguments = call["name"], call.get("arguments", call.get("parameters", {}))
            if not isinstance(name, str) or not isinstance(arguments, dict):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return [OPEN + text + (CLOSE if closed else "")]  # not a call after all: the text as written
        index, self.calls = self.calls, self.calls + 1
        return [ToolCallPart(index, id=f"call_{uuid.uuid4().hex[:24]}", name=name),
                ToolCallPart(index, arguments=json.dumps(arguments, ensure_ascii=False))]
