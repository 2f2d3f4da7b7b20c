"""A message is a list of typed parts; what the model and a reader make of them.

text         {"type": "text", "text"}
reasoning    {"type": "reasoning", "text"}          the model's thinking, shown apart
tool_call    {"type": "tool_call", "id", "name", "arguments"}   arguments: JSON text
tool_result  {"type": "tool_result", "tool_call_id", "content"}
file         {"type": "file", "file_id"}            a reference; never the bytes
"""
from __future__ import annotations

from typing import Callable

from ..providers.base import ChatMessage, Image, ToolCall

TITLE_CHARS = 60
FIELDS = {"text": ("text",), "reasoning": ("text",), "tool_call": ("id", "name", "arguments"),
          "tool_result": ("tool_call_id", "content"), "file": ("file_id",)}  # each a string


def part_problem(parts) -> str | None:
    """What is wrong with a list of parts that did not come through the API's models (an import),
    or None: each part has its type's fields, as strings, and nothing else."""
    if not isinstance(parts, list) or not parts:
        return "parts: a list of at least one part"
    for n, p in enumerate(parts):
        fields = FIELDS.get(p.get("type")) if isinstance(p, dict) else None
        if fields is None:
            return f"parts.{n}: a part of type text, reasoning, tool_call, tool_result or file"
        if set(p) != {"type", *fields} or not all(isinstance(p[f], str) for f in fields):
            return f"parts.{n}: a {p['type']} part has {', '.join(fields)} (text), and nothing else"
    return None


def file_ids(parts: list[dict]) -> list[str]:
    return [p["file_id"] for p in parts if p["type"] == "file"]


def text_of(parts: list[dict]) -> str:
    """The answer's (or question's) text: its text parts, joined."""
    return "".join(p["text"] for p in parts if p["type"] == "text")


def title_of(text: str) -> str:
    """A thread's title from its first question: the first line, cut to TITLE_CHARS."""
    line = text.strip().split("\n")[0].strip()
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def reply_parts(text: str, reasoning: str = "", tool_calls: list[dict] = ()) -> list[dict]:
    """A reply's parts in the order a reader sees them: thinking, answer, calls."""
    parts = [{"type": "reasoning", "text": reasoning}] if reasoning else []
    if text or not tool_calls:
        parts.append({"type": "text", "text": text})
    return parts + [{"type": "tool_call", "id": c["id"], "name": c["name"], "arguments": c["arguments"]}
                    for c in tool_calls]


def chat_messages(path: list[dict], file_content: Callable[[str], str | Image] | None = None) -> list[ChatMessage]:
    """A path of messages as the model sees it: its images and text, the text of its other files
    (`file_content` of each file id), and calls (thinking is not sent again; a message with nothing
    to say, such as a failed reply, is left out). A reply whose tools Rill ran holds rounds, in
    order: what the model said and called, then each call's result, then what it said next."""
    out = []
    for m in path:
        said: list[dict] = []
        for p in [*m["parts"], None]:
            if p is None or p["type"] == "tool_result":
                if message := said_message(m["role"], said, file_content):
                    out.append(message)
                said = []
                if p is not None:
                    out.append(ChatMessage("tool", p["content"], tool_call_id=p["tool_call_id"]))
            else:
                said.append(p)
    return out


def said_message(role: str, parts: list[dict], file_content) -> ChatMessage | None:
    calls = tuple(ToolCall(p["id"], p["name"], p["arguments"]) for p in parts if p["type"] == "tool_call")
    files = [file_content(f) for f in file_ids(parts)]
    images = tuple(f for f in files if isinstance(f, Image))
    text = "\n\n".join(p for p in [*(f for f in files if isinstance(f, str)), text_of(parts)] if p)
    return ChatMessage(role, text, calls, images=images) if text or calls or images else None
