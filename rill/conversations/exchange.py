"""Threads in and out: Markdown of a path, Rill JSON of a whole tree, and imports of Rill JSON
(this release's and the browser's earlier export), a ChatGPT `conversations.json` and an Open
WebUI export. An import makes each conversation a thread whose ids come from the file's own, so
importing the same file twice adds nothing."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Callable, NamedTuple

from ..refusals import Refused
from .parts import file_ids, part_problem, reply_parts, text_of

FORMAT = "rill.threads"
NAMESPACE = uuid.UUID("9a3c6f0e-5b7d-4c21-8e0f-1f2a3b4c5d6e")  # ids of imported threads and messages
MAX_IMPORT_THREADS = 10_000


class Conversation(NamedTuple):
    """One conversation of a file, as read: its messages list parents before children."""

    source_id: str | None
    title: str
    created: float | None
    updated: float | None  # the list shows it where the source did
    messages: list[dict]
    leaf: str | None


def markdown(thread: dict, path: list[dict], file_names: dict[str, str] | None = None) -> str:
    """The path as Markdown: each message under its author, thinking folded in a <details>, tool
    calls and results as fenced blocks, attached files by name (`file_names`, by id)."""
    lines = [f"# {thread['title'] or 'Untitled chat'}", ""]
    for m in path:
        author = {"user": "You", "assistant": "Assistant"}.get(m["role"], m["role"].capitalize())
        lines += [f"**{author}**" + (f" ({m['model']})" if m["role"] == "assistant" and m["model"] else ""), ""]
        for part in m["parts"]:
            if part["type"] == "reasoning":
                lines += ["<details><summary>Thinking</summary>", "", part["text"].strip(), "", "</details>", ""]
            elif part["type"] == "text" and part["text"].strip():
                lines += [part["text"].strip(), ""]
            elif part["type"] == "tool_call":
                lines += [f"Tool call `{part['name']}`:", "", "```json", pretty(part["arguments"]), "```", ""]
            elif part["type"] == "tool_result":
                lines += ["Tool result:", "", "```", part["content"], "```", ""]
            elif part["type"] == "file":
                lines += [f"Attached: {(file_names or {}).get(part['file_id'], 'a file')} (`{part['file_id']}`)", ""]
        if m["status"] not in ("complete",):
            lines += [f"*({m['status']})*", ""]
    return "\n".join(lines).rstrip() + "\n"


def pretty(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def export(threads: list[dict]) -> dict:
    """Rill JSON: whole trees (thread trees as GET /api/threads/<id> gives them)."""
    return {"format": FORMAT, "version": 2, "exported_at": iso_now(), "threads": threads}


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- imports: each kind of file gives its Conversations -------------------------------------------

KINDS = {"rill": "Rill export", "chatgpt": "ChatGPT conversations.json", "openwebui": "Open WebUI export"}


def conversations(data) -> tuple[str, list[Conversation]]:
    """The file's kind and its conversations, or a Refused that says what the file is not (or
    where it breaks the format it claims)."""
    if isinstance(data, dict) and data.get("format") == FORMAT:
        kind, read = "rill", lambda: rill_conversations(data)
    elif isinstance(data, list) and data and isinstance(data[0], dict) and "mapping" in data[0]:
        kind, read = "chatgpt", lambda: [chatgpt_conversation(c) for c in data]
    elif isinstance(data, list) and data and isinstance(data[0], dict) and "history" in (data[0].get("chat") or {}):
        kind, read = "openwebui", lambda: [openwebui_conversation(c) for c in data]
    else:
        raise Refused("invalid_request_error", "not a file Rill imports: expected a Rill export "
                                               f"(\"format\": \"{FORMAT}\"), a ChatGPT conversations.json or an "
                                               "Open WebUI export (a list of chats)")
    try:
        return kind, read()
    except (KeyError, TypeError, AttributeError, ValueError) as broken:  # a field missing, or of another type
        what = f"no {broken.args[0]!r}" if isinstance(broken, KeyError) else str(broken)
        raise Refused("invalid_request_error", f"not a valid {KINDS[kind]}: {what}") from None


def rill_conversations(data: dict) -> list[Conversation]:
    version, out = data.get("version"), []
    if not isinstance(data.get("threads"), list):
        raise Refused("invalid_request_error", "threads: a list of threads, each with its messages")
    for t in data["threads"]:
        if not isinstance(t, dict) or not isinstance(t.get("messages"), list):
            raise Refused("invalid_request_error", "threads: each needs its messages")
        if version == 2:  # a tree, as this server exports it
            messages = [{"id": m["id"], "parent_id": m.get("parent_id"), "role": m["role"], "parts": m["parts"],
                         "status": m.get("status", "complete"), "model": m.get("model")} for m in t["messages"]]
            leaf = t.get("current_leaf")
        else:  # version 1: the browser's own export of a chain
            messages, parent = [], None
            for m in sorted(t["messages"], key=lambda m: m.get("seq", 0)):
                parts = reply_parts(m.get("content", ""), m.get("reasoning", ""),
                                    [{"id": c.get("id") or "call", "name": c.get("name", ""),
                                      "arguments": c.get("arguments", "")} for c in m.get("toolCalls") or []]) \
                    if m.get("role") == "assistant" else [{"type": "text", "text": m.get("content", "")}]
                messages.append({"id": m["id"], "parent_id": parent, "role": m["role"], "parts": parts,
                                 "status": "cancelled" if m.get("status") == "stopped" else "complete",
                                 "model": m.get("model")})
                parent = m["id"]
            leaf = parent
        out.append(Conversation(t.get("id"), t.get("title", ""), timestamp(t.get("createdAt") or t.get("created_at")),
                                timestamp(t.get("updatedAt") or t.get("updated_at")), messages, leaf))
    return out


def chatgpt_conversation(c: dict) -> Conversation:
    """ChatGPT's export: a mapping of nodes, each with its parent and a message (or none: the root)."""
    mapping = c["mapping"]
    messages = []
    kept = {}  # node id -> the nearest kept ancestor (nodes without a user or assistant message are skipped)

    def kept_parent(node_id):
        while node_id is not None and node_id not in kept:
            node_id = (mapping.get(node_id) or {}).get("parent")
        return node_id

    for node_id in order(mapping):
        node = mapping[node_id]
        message = node.get("message") or {}
        role = (message.get("author") or {}).get("role")
        content = message.get("content") or {}
        text = "".join(p for p in content.get("parts") or [] if isinstance(p, str))
        if role not in ("user", "assistant") or (not text and role == "user"):
            continue
        messages.append({"id": node_id, "parent_id": kept_parent(node.get("parent")), "role": role,
                         "parts": [{"type": "text", "text": text}], "status": "complete",
                         "model": (message.get("metadata") or {}).get("model_slug")})
        kept[node_id] = True
    return Conversation(c.get("conversation_id") or c.get("id"), c.get("title") or "", timestamp(c.get("create_time")),
                        timestamp(c.get("update_time")), messages, kept_parent(c.get("current_node")))


def order(mapping: dict) -> list[str]:
    """Node ids, every parent before its children; a cycle is refused."""
    done, out = set(), []
    for start in mapping:
        chain, at = [], start
        while at is not None and at not in done and at in mapping:
            if at in chain:
                raise Refused("invalid_request_error", f"message {at!r} is its own ancestor (a cycle)")
            chain.append(at)
            at = mapping[at].get("parent")
        for node_id in reversed(chain):
            done.add(node_id)
            out.append(node_id)
    return out


def openwebui_conversation(c: dict) -> Conversation:
    """Open WebUI's export: chat.history.messages by id, each with its parentId; currentId."""
    history = c["chat"]["history"]
    nodes = history.get("messages") or {}
    messages, kept = [], set()  # a message under a skipped one goes under the nearest kept one above

    def kept_parent(node_id):
        while node_id is not None and node_id not in kept:
            node_id = (nodes.get(node_id) or {}).get("parentId")
        return node_id

    for node_id in order({k: {"parent": v.get("parentId")} for k, v in nodes.items()}):
        m = nodes[node_id]
        if m.get("role") not in ("user", "assistant"):
            continue
        messages.append({"id": node_id, "parent_id": kept_parent(m.get("parentId")), "role": m["role"],
                         "parts": [{"type": "text", "text": m.get("content") or ""}], "status": "complete",
                         "model": m.get("model")})
        kept.add(node_id)
    return Conversation(c.get("id"), c.get("title") or c["chat"].get("title") or "", timestamp(c.get("created_at")),
                        timestamp(c.get("updated_at")), messages, history.get("currentId"))


def timestamp(value) -> float | None:
    if isinstance(value, (int, float)):
        return float(value) if value < 1e11 else value / 1000  # seconds, or milliseconds
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def import_into(store, owner: str, data, owns_file: Callable[[str], bool]) -> dict:
    """Every conversation of the file as a thread of the owner's: {"imported": n, "skipped": n}.
    The whole file is checked before anything is added; a `file` part must name one of the
    owner's files on this server (`owns_file`)."""
    kind, found = conversations(data)
    if len(found) > MAX_IMPORT_THREADS:
        raise Refused("invalid_request_error", f"{len(found)} conversations; at most {MAX_IMPORT_THREADS} at once")
    ready = []
    for source_id, title, created, updated, messages, leaf in found:
        thread_id = uuid.uuid5(NAMESPACE, f"{owner}:{kind}:{source_id or json.dumps(messages)[:200]}").hex
        ready.append((thread_id, str(title or "")[:200], created, updated, tree_of(thread_id, messages, leaf)))
        for m in messages:
            if missing := [f for f in file_ids(m["parts"]) if not owns_file(f)]:
                raise Refused("invalid_request_error", f"message {m['id']!r}: no file {missing[0]!r} of yours on "
                                                       "this server (files are not in exports: upload it again)")
    imported = skipped = 0
    for thread_id, title, created, updated, (tree, leaf) in ready:
        if store.thread(thread_id, owner) is not None:
            skipped += 1
            continue
        store.import_thread(owner, thread_id, title, tree, leaf, created, updated)
        imported += 1
    if kind == "rill" and data.get("version") == 1:
        for t in data["threads"]:
            replace_session(store, owner, t)
    return {"imported": imported, "skipped": skipped}


def tree_of(thread_id: str, messages: list[dict], leaf: str | None) -> tuple[list[dict], str | None]:
    """The file's messages checked and given this server's ids (derived from the file's, so a
    second import finds them), parents first; and the leaf's new id."""
    by_id = {}
    for m in messages:
        if not isinstance(m.get("id"), str) or not m["id"]:
            raise Refused("invalid_request_error", "messages: each needs its id")
        if m["parent_id"] is not None and not isinstance(m["parent_id"], str):
            raise Refused("invalid_request_error", f"message {m['id']!r}: parent_id must be a message id")
        by_id[m["id"]] = m
    for m in messages:
        if m["parent_id"] is not None and m["parent_id"] not in by_id:
            raise Refused("invalid_request_error", f"message {m['id']!r}: its parent {m['parent_id']!r} is not "
                                                   "in the file")
        if m["role"] not in ("user", "assistant", "system", "tool"):
            raise Refused("invalid_request_error", f"message {m['id']!r}: role {m['role']!r} is not one Rill keeps")
        if (wrong := part_problem(m["parts"])) is not None:
            raise Refused("invalid_request_error", f"message {m['id']!r}: {wrong}")
    ordered = [by_id[i] for i in order({m["id"]: {"parent": m["parent_id"]} for m in messages})]
    ids = {m["id"]: uuid.uuid5(NAMESPACE, f"{thread_id}:{m['id']}").hex for m in ordered}
    return [{**m, "id": ids[m["id"]], "parent_id": ids.get(m["parent_id"])} for m in ordered], ids.get(leaf)


def replace_session(store, owner: str, thread: dict) -> None:
    """A chat the browser kept itself (the 0.1.0 export) named the server session the model saw,
    which became a thread on upgrade: the browser's copy, the whole chat, replaces it, unless the
    session went on after it (a message the browser's copy does not have): then both stay."""
    session_id = thread.get("sessionId")
    if not isinstance(session_id, str):
        return
    kept = {(m.get("role"), m.get("content")) for m in thread["messages"]}
    if all((m["role"], text_of(m["parts"])) in kept for m in store.path(session_id, owner)):
        store.delete_thread(owner, session_id)
