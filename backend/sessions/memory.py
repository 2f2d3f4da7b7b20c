"""In-memory chat sessions: a dict behind one lock, with TTL expiry and size caps.

Each session belongs to the user who created it: for anyone else it does not exist.
A user past `max_per_user` sessions loses their own least recently used one, so no one user can
push the others' sessions out; past `max_sessions` in all, the least recently used goes. A session keeps at
most `max_messages` messages, dropping the oldest. A turn's user message and reply are appended
together, so concurrent turns on one session never interleave.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timezone


def now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MemorySessionStore:
    def __init__(self, ttl_seconds: float = 86400, max_sessions: int = 10000, max_messages: int = 500,
                 max_per_user: int = 1000, clock=time.time):
        self.ttl = ttl_seconds
        self.max_sessions = max_sessions
        self.max_per_user = max_per_user
        self.max_messages = max_messages
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, dict] = OrderedDict()  # least recently used first

    def _expire(self, now: float) -> None:
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest["updated"] < self.ttl:
                break
            del self._sessions[oldest["id"]]

    def _live(self, session_id: str, user: str, now: float) -> dict | None:
        self._expire(now)
        session = self._sessions.get(session_id)
        return session if session and session["user"] == user else None

    def create(self, user: str = "anonymous", messages=()) -> dict:
        """A new session; `messages` restores a conversation the client kept (its own copy)."""
        now = self.clock()
        session = {"id": uuid.uuid4().hex, "user": user, "created": now, "updated": now,
                   "messages": [{"created_at": now_iso(now), **m} for m in messages][-self.max_messages:]}
        with self._lock:
            self._expire(now)
            mine = [s["id"] for s in self._sessions.values() if s["user"] == user]
            for old in mine[: max(0, len(mine) - self.max_per_user + 1)]:  # least recently used first
                del self._sessions[old]
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)
            self._sessions[session["id"]] = session
        return self._public(session)

    def exists(self, session_id: str, user: str = "anonymous") -> bool:
        with self._lock:
            return self._live(session_id, user, self.clock()) is not None

    def get(self, session_id: str, user: str = "anonymous") -> dict | None:
        with self._lock:
            session = self._live(session_id, user, self.clock())
            return self._public(session, with_messages=True) if session else None

    def history(self, session_id: str, user: str = "anonymous") -> list[dict]:
        """The session's messages, oldest first (empty for an unknown session)."""
        with self._lock:
            session = self._live(session_id, user, self.clock())
            return [dict(m) for m in session["messages"]] if session else []

    def list(self, user: str = "anonymous") -> list[dict]:
        with self._lock:
            self._expire(self.clock())
            return [self._public(s) for s in reversed(self._sessions.values()) if s["user"] == user]

    def delete(self, session_id: str, user: str = "anonymous") -> bool:
        with self._lock:
            if self._live(session_id, user, self.clock()) is None:
                return False
            del self._sessions[session_id]
            return True

    def append(self, session_id: str, *messages: dict, user: str = "anonymous") -> bool:
        """Append messages as one block; False if the session is gone."""
        now = self.clock()
        with self._lock:
            session = self._live(session_id, user, now)
            if session is None:
                return False
            for message in messages:
                session["messages"].append({"created_at": now_iso(now), **message})
            del session["messages"][: max(0, len(session["messages"]) - self.max_messages)]
            session["updated"] = now
            self._sessions.move_to_end(session_id)
            return True

    def rewind(self, session_id: str, turn_id: str, user: str = "anonymous") -> int | None:
        """Forget turn `turn_id` (its question and reply) and everything after it, so that it can
        be asked again. The number of messages removed; None if the session or turn is unknown
        (then there is nothing to forget)."""
        with self._lock:
            session = self._live(session_id, user, self.clock())
            messages = session["messages"] if session else []
            at = next((i for i, m in enumerate(messages) if m.get("turn_id") == turn_id), None)
            if at is None:
                return None
            start = at - 1 if at > 0 and messages[at - 1]["role"] == "user" else at
            removed = len(messages) - start
            del messages[start:]
            return removed

    def close(self) -> None:
        pass

    def _public(self, session: dict, with_messages: bool = False) -> dict:
        view = {
            "id": session["id"],
            "created_at": now_iso(session["created"]),
            "updated_at": now_iso(session["updated"]),
            "expires_at": now_iso(session["updated"] + self.ttl),
            "message_count": len(session["messages"]),
        }
        if with_messages:
            view["messages"] = [dict(m) for m in session["messages"]]
        return view
