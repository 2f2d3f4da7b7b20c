"""Sessions of release 0.1.0, which kept a flat list of messages per session (in SQLite, or in
Redis when several workers ran), become threads of this release: a chain with the session's id,
so clients that still send it as `session_id` find it. The SQLite ones move in the first
migration; the Redis ones move on start (`move_redis_sessions`), since Alembic does not see Redis.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime

PREFIX = "rill:sessions:"  # where 0.1.0's RedisSessionStore kept its keys
MOVING_LOCK_SECONDS = 600


def session_message(body: dict, fallback_created: float) -> dict:
    """One stored 0.1.0 message (role, content, reasoning, tool_calls, tokens, model, status,
    turn_id, created_at) as a message of a thread: parts, usage, the same times."""
    role = body.get("role", "user")
    parts = [{"type": "reasoning", "text": body["reasoning"]}] if body.get("reasoning") else []
    if body.get("content") or role == "user":
        parts.append({"type": "text", "text": body.get("content", "")})
    parts += [{"type": "tool_call", "id": c.get("id"), "name": c.get("name", ""), "arguments": c.get("arguments", "")}
              for c in body.get("tool_calls") or []]
    tokens = body.get("tokens")
    try:
        created = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        created = fallback_created
    return {"id": uuid.uuid4().hex, "role": role, "parts": parts, "model": body.get("model"),
            "status": body.get("status") or "complete", "turn_id": body.get("turn_id"), "created": created,
            "usage": None if tokens is None else {"prompt_tokens" if role == "user" else "completion_tokens": tokens}}


def move_redis_sessions(client, store) -> int:
    """Each session 0.1.0 left in Redis becomes a thread (its keys go once its thread is written).
    One worker moves them while the others start; a session whose id is taken is left in place.
    Returns how many moved."""
    if not client.exists(PREFIX + "updated") or not client.set(PREFIX + "moving", 1, nx=True, ex=MOVING_LOCK_SECONDS):
        return 0
    moved = 0
    try:
        for raw_id in client.zrange(PREFIX + "updated", 0, -1):
            session_id = raw_id.decode()
            key = f"{PREFIX}s:{session_id}"
            user, created, updated = (v and v.decode() for v in client.hmget(key, "user", "created", "updated"))
            if user is None:  # its keys went (expired or deleted) and only the index was left
                client.zrem(PREFIX + "updated", session_id)
                continue
            if store.thread(session_id, user) is None:
                created, updated = float(created), float(updated)
                tree, parent = [], None
                for body in client.lrange(key + ":m", 0, -1):
                    message = {**session_message(json.loads(body), created), "parent_id": parent}
                    tree.append(message)
                    parent = message["id"]
                store.import_thread(user, session_id, "", tree, parent, created, updated)
            with client.pipeline() as pipe:
                pipe.delete(key, key + ":m")
                pipe.zrem(PREFIX + "lru", session_id).zrem(PREFIX + "updated", session_id)
                pipe.zrem(f"{PREFIX}user:{user}", session_id)
                pipe.execute()
            moved += 1
        if not client.zcard(PREFIX + "updated"):
            client.delete(PREFIX + "touch")
    finally:
        client.delete(PREFIX + "moving")
    return moved
