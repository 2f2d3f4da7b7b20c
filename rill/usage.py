"""Who used how much: every finished turn records its user, model, token counts and duration.

One contract, three stores, like the sessions: memory (tests), SQLite (the embedded default, a
row per turn beside the sessions), Redis (several workers: per day, user and model counters).
`totals()` sums by UTC day, user and model; prices (`RILL_PRICES`) turn tokens into cost.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

FIELDS = ("turns", "prompt_tokens", "completion_tokens", "duration_ms")
REDIS_KEEP_DAYS = 400  # a day's counters expire after this long


@dataclass(frozen=True)
class TurnUsage:
    user: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    duration_ms: float
    at: float  # seconds since the epoch


def day_of(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).date().isoformat()


def days_back(days: int, now: float) -> list[str]:
    """The last `days` UTC days, oldest first, today last."""
    today = datetime.fromtimestamp(now, timezone.utc).date()
    return [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def _row(day: str, user: str, model: str, values) -> dict:
    turns, prompt, completion, duration = values
    return {"day": day, "user": user, "model": model, "turns": int(turns), "prompt_tokens": int(prompt),
            "completion_tokens": int(completion), "duration_ms": round(float(duration), 1)}


class MemoryUsage:
    def __init__(self):
        self.turns: list[TurnUsage] = []
        self._lock = threading.Lock()

    def record(self, usage: TurnUsage) -> None:
        with self._lock:
            self.turns.append(usage)

    def totals(self, since_day: str, user: str | None = None) -> list[dict]:
        """Sums by (day, user, model) from `since_day` on, for one user or (None) all."""
        sums: dict[tuple, list] = {}
        with self._lock:
            for t in self.turns:
                day = day_of(t.at)
                if day >= since_day and (user is None or t.user == user):
                    s = sums.setdefault((day, t.user, t.model), [0, 0, 0, 0.0])
                    for i, value in enumerate((1, t.prompt_tokens, t.completion_tokens, t.duration_ms)):
                        s[i] += value
        return [_row(*key, values) for key, values in sorted(sums.items())]


class SQLiteUsage:
    """A row per turn in `usage.db` beside sessions.db; WAL, so the turns writing it and a
    reader summing it do not wait for each other."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS usage (
                day TEXT NOT NULL, user TEXT NOT NULL, model TEXT NOT NULL, at REAL NOT NULL,
                prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, duration_ms REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS usage_by_day ON usage (day, user);
        """)

    def record(self, usage: TurnUsage) -> None:
        with self._lock:
            self._db.execute("INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (day_of(usage.at), usage.user, usage.model, usage.at, usage.prompt_tokens,
                              usage.completion_tokens, usage.duration_ms))

    def totals(self, since_day: str, user: str | None = None) -> list[dict]:
        query = ("SELECT day, user, model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(duration_ms) "
                 "FROM usage WHERE day >= ?" + (" AND user = ?" if user is not None else "") +
                 " GROUP BY day, user, model ORDER BY day, user, model")
        with self._lock:
            rows = self._db.execute(query, (since_day,) if user is None else (since_day, user)).fetchall()
        return [_row(day, who, model, values) for day, who, model, *values in rows]

    def close(self) -> None:
        self._db.close()


class RedisUsage:
    """Counters per day (`usage:<day>`, a hash of `<field> <user> <model>` -> sum), so any worker
    adds to them in one round trip and a month is 30 reads."""

    def __init__(self, client, prefix: str = "rill:"):
        self.client = client
        self.prefix = prefix

    def record(self, usage: TurnUsage) -> None:
        key = f"{self.prefix}usage:{day_of(usage.at)}"
        who = json.dumps([usage.user, usage.model])
        pipe = self.client.pipeline()
        for field, value in zip(FIELDS, (1, usage.prompt_tokens, usage.completion_tokens, usage.duration_ms)):
            pipe.hincrbyfloat(key, f"{field} {who}", value)
        pipe.expire(key, REDIS_KEEP_DAYS * 86400)
        pipe.execute()

    def totals(self, since_day: str, user: str | None = None) -> list[dict]:
        today = day_of(time.time())
        start = datetime.fromisoformat(since_day).date()
        days = [(start + timedelta(days=n)).isoformat()
                for n in range((datetime.fromisoformat(today).date() - start).days + 1)]
        pipe = self.client.pipeline()
        for day in days:
            pipe.hgetall(f"{self.prefix}usage:{day}")
        rows = []
        for day, counters in zip(days, pipe.execute()):
            sums: dict[tuple, dict] = {}
            for name, value in counters.items():
                field, who = (name.decode() if isinstance(name, bytes) else name).split(" ", 1)
                who_user, model = json.loads(who)
                if user is None or who_user == user:
                    sums.setdefault((who_user, model), {})[field] = float(value)
            rows += [_row(day, who_user, model, [s.get(f, 0) for f in FIELDS])
                     for (who_user, model), s in sorted(sums.items())]
        return rows


class Prices:
    """`RILL_PRICES`: JSON, per model, dollars per million tokens:
    {"openai/gpt-4.1-mini": {"prompt": 0.4, "completion": 1.6}}."""

    def __init__(self, raw: str):
        try:
            table = json.loads(raw) if raw.strip() else {}
            self.table = {model: (float(p.get("prompt", 0)), float(p.get("completion", 0)))
                          for model, p in table.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise SystemExit(f"RILL_PRICES must be JSON like "
                             f"{{\"openai/gpt-4.1-mini\": {{\"prompt\": 0.4, \"completion\": 1.6}}}}: {exc}")

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        if model not in self.table:
            return None
        prompt, completion = self.table[model]
        return round((prompt_tokens * prompt + completion_tokens * completion) / 1e6, 6)


def report(store, prices: Prices, days: int, user: str | None, now: float | None = None) -> dict:
    """GET /api/usage's body: rows by day and model (with cost), and the totals."""
    span = days_back(days, now or time.time())
    rows = store.totals(span[0], user)
    for row in rows:
        row["cost"] = prices.cost(row["model"], row["prompt_tokens"], row["completion_tokens"])
    totals = {field: sum(row[field] for row in rows) for field in FIELDS}
    totals["duration_ms"] = round(totals["duration_ms"], 1)
    costs = [row["cost"] for row in rows if row["cost"] is not None]
    totals["cost"] = round(sum(costs), 6) if costs else None
    return {"user": user, "days": days, "since": span[0], "until": span[-1], "rows": rows, "totals": totals}
