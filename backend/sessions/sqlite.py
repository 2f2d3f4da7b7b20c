"""Chat sessions in SQLite (the embedded default): they survive a restart.

The same contract as MemorySessionStore (TTL, caps, per-user isolation, rewind), on one
connection in WAL mode behind a lock: every call is one short transaction, so a turn's question
and reply are written together or not at all. Least recently used order is a counter that every
create and append advances, not a timestamp (two calls in one clock tick stay in order).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from .memory import now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    touched INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_touch ON sessions (touched);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user, touched);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, position)
);
"""


class SQLiteSessionStore:
    def __init__(self, path: str | Path, ttl_seconds: float = 86400, max_sessions: int = 10000,
                 max_messages: int = 500, max_per_user: int = 1000, clock=time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl_seconds
        self.max_sessions = max_sessions
        self.max_messages = max_messages
        self.max_per_user = max_per_user
        self.clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(SCHEMA)

    def _write(self):
        """A write transaction (BEGIN IMMEDIATE: no lock upgrade can fail half-way)."""
        store = self

        class Transaction:
            def __enter__(self):
                store._lock.acquire()
                store._db.execute("BEGIN IMMEDIATE")
                return store._db

            def __exit__(self, kind, *_):
                try:
                    store._db.execute("ROLLBACK" if kind else "COMMIT")
                finally:
                    store._lock.release()

        return Transaction()

    def _expire(self, db, now: float) -> None:
        db.execute("DELETE FROM sessions WHERE updated <= ?", (now - self.ttl,))

    def _live(self, db, session_id: str, user: str, now: float):
        return db.execute("SELECT * FROM sessions WHERE id = ? AND user = ? AND updated > ?",
                          (session_id, user, now - self.ttl)).fetchone()

    def _touch(self, db) -> int:
        return db.execute("SELECT COALESCE(MAX(touched), 0) + 1 FROM sessions").fetchone()[0]

    def _messages(self, db, session_id: str) -> list[dict]:
        rows = db.execute("SELECT body FROM messages WHERE session_id = ? ORDER BY position", (session_id,))
        return [json.loads(r["body"]) for r in rows]

    def _insert(self, db, session_id: str, messages, now: float) -> None:
        start = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM messages WHERE session_id = ?",
                           (session_id,)).fetchone()[0]
        db.executemany("INSERT INTO messages (session_id, position, body) VALUES (?, ?, ?)",
                       [(session_id, start + i, json.dumps({"created_at": now_iso(now), **m}))
                        for i, m in enumerate(messages)])
        db.execute("DELETE FROM messages WHERE session_id = ? AND position < ?",
                   (session_id, start + len(messages) - self.max_messages))

    def create(self, user: str = "anonymous", messages=()) -> dict:
        """A new session; `messages` restores a conversation the client kept (its own copy)."""
        now = self.clock()
        session_id = uuid.uuid4().hex
        with self._write() as db:
            self._expire(db, now)
            mine = db.execute("SELECT id FROM sessions WHERE user = ? ORDER BY touched DESC", (user,)).fetchall()
            for row in mine[max(0, self.max_per_user - 1):]:
                db.execute("DELETE FROM sessions WHERE id = ?", (row["id"],))
            excess = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] - self.max_sessions + 1
            if excess > 0:
                db.execute("DELETE FROM sessions WHERE id IN (SELECT id FROM sessions ORDER BY touched LIMIT ?)",
                           (excess,))
            db.execute("INSERT INTO sessions (id, user, created, updated, touched) VALUES (?, ?, ?, ?, ?)",
                       (session_id, user, now, now, self._touch(db)))
            if messages:
                self._insert(db, session_id, messages, now)
            return self._public(db, db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone())

    def exists(self, session_id: str, user: str = "anonymous") -> bool:
        with self._lock:
            return self._live(self._db, session_id, user, self.clock()) is not None

    def get(self, session_id: str, user: str = "anonymous") -> dict | None:
        with self._lock:
            row = self._live(self._db, session_id, user, self.clock())
            return self._public(self._db, row, with_messages=True) if row else None

    def history(self, session_id: str, user: str = "anonymous") -> list[dict]:
        with self._lock:
            row = self._live(self._db, session_id, user, self.clock())
            return self._messages(self._db, session_id) if row else []

    def list(self, user: str = "anonymous") -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM sessions WHERE user = ? AND updated > ? ORDER BY touched DESC",
                                    (user, self.clock() - self.ttl)).fetchall()
            return [self._public(self._db, row) for row in rows]

    def delete(self, session_id: str, user: str = "anonymous") -> bool:
        with self._write() as db:
            if self._live(db, session_id, user, self.clock()) is None:
                return False
            db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            return True

    def append(self, session_id: str, *messages: dict, user: str = "anonymous") -> bool:
        now = self.clock()
        with self._write() as db:
            if self._live(db, session_id, user, now) is None:
                return False
            self._insert(db, session_id, messages, now)
            db.execute("UPDATE sessions SET updated = ?, touched = ? WHERE id = ?", (now, self._touch(db), session_id))
            return True

    def rewind(self, session_id: str, turn_id: str, user: str = "anonymous") -> int | None:
        with self._write() as db:
            if self._live(db, session_id, user, self.clock()) is None:
                return None
            rows = db.execute("SELECT position, body FROM messages WHERE session_id = ? ORDER BY position",
                              (session_id,)).fetchall()
            bodies = [json.loads(r["body"]) for r in rows]
            at = next((i for i, m in enumerate(bodies) if m.get("turn_id") == turn_id), None)
            if at is None:
                return None
            start = at - 1 if at > 0 and bodies[at - 1]["role"] == "user" else at
            db.execute("DELETE FROM messages WHERE session_id = ? AND position >= ?",
                       (session_id, rows[start]["position"]))
            return len(rows) - start

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _public(self, db, row, with_messages: bool = False) -> dict:
        count = db.execute("SELECT COUNT(*) FROM messages WHERE session_id = ?", (row["id"],)).fetchone()[0]
        view = {
            "id": row["id"],
            "created_at": now_iso(row["created"]),
            "updated_at": now_iso(row["updated"]),
            "expires_at": now_iso(row["updated"] + self.ttl),
            "message_count": count,
        }
        if with_messages:
            view["messages"] = self._messages(db, row["id"])
        return view
