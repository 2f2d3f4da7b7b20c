"""Chat sessions in Redis (RILL_REDIS_URL): every worker sees the same sessions.

The same contract as MemorySessionStore (TTL, caps, per-user isolation, rewind). Each call is one
Lua script, so it is atomic across workers like a SQLite transaction: a turn's question and reply
are written together or not at all, and a check (is it live, is it this user's) never races the
write that follows it. Keys (under `prefix`): `s:<id>` a hash (user, created, updated),
`s:<id>:m` the messages as JSON, zsets `lru` and `updated` over all sessions and `user:<name>`
per user (scored by a counter that every create and append advances: least recently used order).
"""
from __future__ import annotations

import json
import time
import uuid

import redis

from .memory import now_iso

LIBRARY = """
local P, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function drop(id)
  local user = redis.call('HGET', P .. 's:' .. id, 'user')
  redis.call('DEL', P .. 's:' .. id, P .. 's:' .. id .. ':m')
  redis.call('ZREM', P .. 'lru', id)
  redis.call('ZREM', P .. 'updated', id)
  if user then redis.call('ZREM', P .. 'user:' .. user, id) end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'updated', '-inf', now - ttl)) do drop(id) end
local function live(id, user)
  local h = redis.call('HMGET', P .. 's:' .. id, 'user', 'updated')
  return h[1] == user and tonumber(h[2]) > now - ttl
end
local function touch(id, user)
  local n = redis.call('INCR', P .. 'touch')
  redis.call('HSET', P .. 's:' .. id, 'updated', ARGV[2])
  redis.call('ZADD', P .. 'lru', n, id)
  redis.call('ZADD', P .. 'updated', now, id)
  redis.call('ZADD', P .. 'user:' .. user, n, id)
end
local function view(id)
  local h = redis.call('HMGET', P .. 's:' .. id, 'created', 'updated')
  return {id, h[1], h[2], redis.call('LLEN', P .. 's:' .. id .. ':m')}
end
"""

SCRIPTS = {
    # ARGV: prefix, now, ttl, id, user, max_per_user, max_sessions, max_messages, messages...
    "create": """
local id, user = ARGV[4], ARGV[5]
local mine = redis.call('ZRANGE', P .. 'user:' .. user, 0, -1)
for i = 1, #mine - tonumber(ARGV[6]) + 1 do drop(mine[i]) end
local excess = redis.call('ZCARD', P .. 'lru') - tonumber(ARGV[7]) + 1
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', P .. 'lru', 0, excess - 1)) do drop(old) end
end
redis.call('HSET', P .. 's:' .. id, 'user', user, 'created', ARGV[2])
touch(id, user)
for i = 9, #ARGV do redis.call('RPUSH', P .. 's:' .. id .. ':m', ARGV[i]) end
redis.call('LTRIM', P .. 's:' .. id .. ':m', -tonumber(ARGV[8]), -1)
return view(id)
""",
    # ARGV: prefix, now, ttl, id, user, max_messages, messages...
    "append": """
local id, user = ARGV[4], ARGV[5]
if not live(id, user) then return 0 end
for i = 7, #ARGV do redis.call('RPUSH', P .. 's:' .. id .. ':m', ARGV[i]) end
redis.call('LTRIM', P .. 's:' .. id .. ':m', -tonumber(ARGV[6]), -1)
touch(id, user)
return 1
""",
    # ARGV: prefix, now, ttl, id, user, what (exists | get | delete)
    "one": """
local id, user, what = ARGV[4], ARGV[5], ARGV[6]
if not live(id, user) then return false end
if what == 'delete' then drop(id); return 1 end
if what == 'exists' then return 1 end
local v = view(id)
v[5] = redis.call('LRANGE', P .. 's:' .. id .. ':m', 0, -1)
return v
""",
    # ARGV: prefix, now, ttl, user
    "list": """
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', P .. 'user:' .. ARGV[4], 0, -1)) do out[#out + 1] = view(id) end
return out
""",
    # ARGV: prefix, now, ttl, id, user, turn_id: the number of messages removed, or false
    "rewind": """
local id, user = ARGV[4], ARGV[5]
if not live(id, user) then return false end
local key = P .. 's:' .. id .. ':m'
local messages = redis.call('LRANGE', key, 0, -1)
for i, body in ipairs(messages) do
  local m = cjson.decode(body)
  if m.turn_id == ARGV[6] then
    local start = i
    if i > 1 and cjson.decode(messages[i - 1]).role == 'user' then start = i - 1 end
    redis.call('LTRIM', key, 0, start - 2)
    return #messages - start + 1
  end
end
return false
""",
}


class RedisSessionStore:
    def __init__(self, client: redis.Redis, ttl_seconds: float = 86400, max_sessions: int = 10000,
                 max_messages: int = 500, max_per_user: int = 1000, clock=time.time, prefix: str = "rill:sessions:"):
        self.client = client
        self.ttl = ttl_seconds
        self.max_sessions = max_sessions
        self.max_messages = max_messages
        self.max_per_user = max_per_user
        self.clock = clock
        self.prefix = prefix
        self._scripts = {name: client.register_script(LIBRARY + body) for name, body in SCRIPTS.items()}

    def _run(self, name: str, *args):
        now = self.clock()
        return self._scripts[name](args=[self.prefix, repr(now), self.ttl, *args])

    @staticmethod
    def _bodies(messages, now: float) -> list[str]:
        return [json.dumps({"created_at": now_iso(now), **m}) for m in messages]

    def create(self, user: str = "anonymous", messages=()) -> dict:
        """A new session; `messages` restores a conversation the client kept (its own copy)."""
        view = self._run("create", uuid.uuid4().hex, user, self.max_per_user, self.max_sessions, self.max_messages,
                         *self._bodies(messages, self.clock()))
        return self._public(view)

    def exists(self, session_id: str, user: str = "anonymous") -> bool:
        return bool(self._run("one", session_id, user, "exists"))

    def get(self, session_id: str, user: str = "anonymous") -> dict | None:
        view = self._run("one", session_id, user, "get")
        return self._public(view, with_messages=True) if view else None

    def history(self, session_id: str, user: str = "anonymous") -> list[dict]:
        view = self._run("one", session_id, user, "get")
        return [json.loads(m) for m in view[4]] if view else []

    def list(self, user: str = "anonymous") -> list[dict]:
        return [self._public(view) for view in self._run("list", user)]

    def delete(self, session_id: str, user: str = "anonymous") -> bool:
        return bool(self._run("one", session_id, user, "delete"))

    def append(self, session_id: str, *messages: dict, user: str = "anonymous") -> bool:
        return bool(self._run("append", session_id, user, self.max_messages, *self._bodies(messages, self.clock())))

    def rewind(self, session_id: str, turn_id: str, user: str = "anonymous") -> int | None:
        removed = self._run("rewind", session_id, user, turn_id)
        return None if removed is None else int(removed)

    def close(self) -> None:
        pass  # the client belongs to the app, which closes it

    def _public(self, view: list, with_messages: bool = False) -> dict:
        session_id, created, updated, count = view[:4]
        updated = float(updated)
        public = {
            "id": session_id.decode() if isinstance(session_id, bytes) else session_id,
            "created_at": now_iso(float(created)),
            "updated_at": now_iso(updated),
            "expires_at": now_iso(updated + self.ttl),
            "message_count": int(count),
        }
        if with_messages:
            public["messages"] = [json.loads(m) for m in view[4]]
        return public
