"""The session store contract, run against every backend (fast tier)."""
import threading
import uuid

import pytest

from backend.sessions.memory import MemorySessionStore
from backend.sessions.redis_store import RedisSessionStore
from backend.sessions.sqlite import SQLiteSessionStore


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request, tmp_path):
    stores = []

    def make(**options):
        if request.param == "memory":
            store = MemorySessionStore(**options)
        elif request.param == "redis":
            server = request.getfixturevalue("redis_server")
            store = RedisSessionStore(server.client, prefix=f"test:{uuid.uuid4().hex}:", **options)
        else:
            store = SQLiteSessionStore(tmp_path / f"sessions-{len(stores)}.db", **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_create_get_list_delete(make_store):
    store = make_store()
    a, b = store.create(), store.create()
    assert store.append(a["id"], {"role": "user", "content": "hi", "tokens": 3})
    got = store.get(a["id"])
    assert got["messages"][0]["role"] == "user" and got["messages"][0]["tokens"] == 3
    assert got["messages"][0]["created_at"].endswith("Z")
    assert [s["id"] for s in store.list()] == [a["id"], b["id"]]  # most recently used first
    assert store.delete(b["id"]) and not store.delete(b["id"])
    assert store.get(b["id"]) is None and not store.append(b["id"], {"role": "user", "content": "x"})


def test_ttl_expires_idle_sessions_only(make_store):
    clock = Clock()
    store = make_store(ttl_seconds=60, clock=clock)
    idle, active = store.create(), store.create()
    clock.now += 50
    store.append(active["id"], {"role": "user", "content": "still here"})
    clock.now += 20
    assert not store.exists(idle["id"])
    assert store.exists(active["id"])


def test_session_cap_evicts_least_recently_used(make_store):
    store = make_store(max_sessions=2)
    first, second = store.create(), store.create()
    store.append(first["id"], {"role": "user", "content": "touch"})
    third = store.create()
    assert store.exists(first["id"]) and store.exists(third["id"])
    assert not store.exists(second["id"])


def test_message_cap_drops_oldest(make_store):
    store = make_store(max_messages=3)
    sid = store.create()["id"]
    for i in range(5):
        store.append(sid, {"role": "user", "content": str(i)})
    assert [m["content"] for m in store.history(sid)] == ["2", "3", "4"]


def test_concurrent_appends_lose_and_interleave_nothing(make_store):
    store = make_store(max_messages=100_000)
    sid = store.create()["id"]
    threads, per_thread = 16, 200
    barrier = threading.Barrier(threads)

    def worker(t):
        barrier.wait()
        for i in range(per_thread):
            store.append(sid, {"role": "user", "content": f"{t}:{i}"},
                         {"role": "assistant", "content": f"{t}:{i}"})

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    messages = store.history(sid)
    assert len(messages) == threads * per_thread * 2
    pairs = list(zip(messages[::2], messages[1::2]))
    assert all(u["role"] == "user" and a["role"] == "assistant" and u["content"] == a["content"]
               for u, a in pairs)
    for t in range(threads):  # each writer's exchanges are all there, in its order
        assert [u["content"] for u, _ in pairs if u["content"].startswith(f"{t}:")] == [
            f"{t}:{i}" for i in range(per_thread)]


def test_sessions_belong_to_their_user(make_store):
    store = make_store()
    alice = store.create("alice")["id"]
    assert store.get(alice, "bob") is None and not store.exists(alice, "bob")
    assert not store.append(alice, {"role": "user", "content": "x"}, user="bob")
    assert not store.delete(alice, "bob") and store.exists(alice, "alice")
    assert store.list("bob") == [] and [s["id"] for s in store.list("alice")] == [alice]
    assert store.history(alice, "bob") == []


def test_rewind_forgets_a_turn_and_what_came_after(make_store):
    store = make_store()
    sid = store.create()["id"]
    for n in range(3):
        store.append(sid, {"role": "user", "content": f"q{n}"},
                     {"role": "assistant", "content": f"a{n}", "turn_id": f"t{n}"})
    assert store.rewind(sid, "t1") == 4
    assert [m["content"] for m in store.history(sid)] == ["q0", "a0"]
    assert store.rewind(sid, "t1") is None and store.rewind("nope", "t0") is None
    assert store.rewind(sid, "t0", user="bob") is None  # not bob's session


def test_one_user_cannot_push_out_the_others_sessions(make_store):
    store = make_store(max_sessions=100, max_per_user=3)
    bob = store.create("bob")["id"]
    alice = [store.create("alice")["id"] for _ in range(10)]
    assert store.exists(bob, "bob")
    assert [s["id"] for s in store.list("alice")] == alice[-3:][::-1]


def test_a_session_can_be_restored_from_the_clients_copy(make_store):
    store = make_store(max_messages=3)
    messages = [{"role": "user", "content": f"q{n}"} for n in range(5)]
    sid = store.create("alice", messages)["id"]
    assert [m["content"] for m in store.history(sid, "alice")] == ["q2", "q3", "q4"]
    assert store.get(sid, "alice")["message_count"] == 3 and store.history(sid, "bob") == []


def test_sqlite_sessions_survive_reopening(tmp_path):
    path = tmp_path / "sessions.db"
    store = SQLiteSessionStore(path)
    sid = store.create("alice")["id"]
    store.append(sid, {"role": "user", "content": "remember me"}, {"role": "assistant", "content": "I will"},
                 user="alice")
    store.close()
    again = SQLiteSessionStore(path)
    assert [m["content"] for m in again.history(sid, "alice")] == ["remember me", "I will"]
    assert [s["id"] for s in again.list("alice")] == [sid]
    again.close()
