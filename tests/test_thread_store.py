"""The thread store's contract (conversations/store.py), and the migration of a database that the
previous release wrote (fast tier)."""
import json
import shutil
import sqlite3
import threading
import time
import uuid

import pytest
import redis

from rill.conversations.store import ThreadStore, sqlite_url
from rill.refusals import Refused
from tests.server import ROOT

LEGACY = ROOT / "tests" / "fixtures" / "sessions-0.1.0.db"  # written by release 0.1.0's SQLiteSessionStore
# Written by the release whose schema ends at 0003 (commit f4126b6): one thread of alice's, a
# question with two replies (branches), a share link.
THREADS_0003 = ROOT / "tests" / "fixtures" / "threads-0003.db"
# Written by the release whose schema ends at 0004 (commit e136f5d): alice's question with an image
# and a text file (their blobs in files-0004/, no normalised image beside them yet), a reply, and
# a share link of the two.
THREADS_0004, FILES_0004 = ROOT / "tests" / "fixtures" / "threads-0004.db", ROOT / "tests" / "fixtures" / "files-0004"
THREADS_0005 = ROOT / "tests" / "fixtures" / "threads-0005.db"  # written by the release before threads remembered tools
THREADS_0006 = ROOT / "tests" / "fixtures" / "threads-0006.db"  # written by the release before stored responses
PICTURE_0004, NOTES_0004 = "1a0e892ff9f34f5d9d4d8ca18c51e592", "cb3274b9d6c1405db2cb3907e9905a71"
# The keys release 0.1.0's RedisSessionStore wrote for three sessions (alice: two, bob: one).
LEGACY_REDIS = ROOT / "tests" / "fixtures" / "redis-sessions-0.1.0.json"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """The contract holds on both backends."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "threads.db")
    else:
        url = request.getfixturevalue("postgres_server").database(f"t{uuid.uuid4().hex}")
    store = ThreadStore(url)
    yield store
    store.close()


def text(message) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def ask(store, owner, thread_id, parent, question, answer):
    q = store.add_message(owner, thread_id, parent, "user", [{"type": "text", "text": question}])
    a = store.add_message(owner, thread_id, q["id"], "assistant", [{"type": "text", "text": answer}])
    return q, a


def test_a_thread_is_a_tree_and_the_model_sees_the_chosen_path(store):
    thread = store.create_thread("alice")
    q1, a1 = ask(store, "alice", thread["id"], None, "Name a river.", "The Rhine.")
    q2, a2 = ask(store, "alice", thread["id"], a1["id"], "Longer?", "The Nile.")
    edited, a3 = ask(store, "alice", thread["id"], a1["id"], "Shorter?", "The Aar.")  # an edit: a sibling of q2
    assert [text(m) for m in store.path(thread["id"], "alice")] == ["Name a river.", "The Rhine.", "Shorter?",
                                                                    "The Aar."]
    assert store.thread(thread["id"], "alice")["title"] == "Name a river."
    store.update_thread("alice", thread["id"], current_leaf=a2["id"])  # back to the first branch
    assert [text(m) for m in store.path(thread["id"], "alice")] == ["Name a river.", "The Rhine.", "Longer?",
                                                                    "The Nile."]
    tree = store.tree(thread["id"], "alice")
    assert len(tree["messages"]) == 6 and tree["current_leaf"] == a2["id"]
    assert {m["id"]: m["active_child"] for m in tree["messages"]}[a1["id"]] == q2["id"]  # the fork remembers


def test_deleting_a_branch_shows_the_one_beside_it(store):
    thread = store.create_thread("alice")
    q1, a1 = ask(store, "alice", thread["id"], None, "q", "a")
    first = store.add_message("alice", thread["id"], q1["id"], "assistant", [{"type": "text", "text": "b"}])
    assert store.delete_message("alice", thread["id"], first["id"])
    assert [text(m) for m in store.path(thread["id"], "alice")] == ["q", "a"]
    assert store.delete_message("alice", thread["id"], q1["id"])  # a root and everything below it
    assert store.tree(thread["id"], "alice")["messages"] == [] and store.path(thread["id"], "alice") == []
    assert not store.delete_message("alice", thread["id"], q1["id"])


def test_changes_since_a_revision_include_deletions(store):
    a = store.create_thread("alice")
    b = store.create_thread("alice")
    since = store.revision("alice")
    ask(store, "alice", a["id"], None, "q", "a")
    assert store.delete_thread("alice", b["id"])
    changed = store.changes("alice", since)
    assert [t["id"] for t in changed["threads"]] == [a["id"]] and changed["deleted"] == [b["id"]]
    assert changed["revision"] == store.revision("alice") > since
    assert store.changes("alice", changed["revision"]) == {"revision": changed["revision"], "threads": [],
                                                           "deleted": []}
    with pytest.raises(Refused, match="not a revision of yours"):
        store.changes("alice", changed["revision"] + 5)
    tree = [{"id": "m", "parent_id": None, "role": "user", "parts": [{"type": "text", "text": "again"}]}]
    store.import_thread("alice", "back", "", tree, None)
    store.delete_thread("alice", "back")
    store.import_thread("alice", "back", "", tree, None)  # deleted, then here again
    later = store.changes("alice", changed["revision"])
    assert [t["id"] for t in later["threads"]] == ["back"] and later["deleted"] == []


def test_a_thread_exists_for_its_owner_only(store):
    thread = store.create_thread("alice")
    q, _ = ask(store, "alice", thread["id"], None, "secret", "kept")
    assert store.thread(thread["id"], "mallory") is None and store.path(thread["id"], "mallory") == []
    assert store.tree(thread["id"], "mallory") is None and not store.delete_thread("mallory", thread["id"])
    with pytest.raises(Refused) as refused:
        store.add_message("mallory", thread["id"], q["id"], "user", [{"type": "text", "text": "x"}])
    assert refused.value.type == "thread_not_found"
    other = store.create_thread("mallory")
    with pytest.raises(Refused, match="parent_id"):  # a parent in another user's thread
        store.add_message("mallory", other["id"], q["id"], "user", [{"type": "text", "text": "x"}])
    assert [t["id"] for t in store.list("mallory")] == [other["id"]]


def test_a_leaf_that_is_not_in_the_thread_is_refused_and_changes_nothing(store):
    thread = store.create_thread("alice")
    _, a = ask(store, "alice", thread["id"], None, "q", "a")
    before = store.revision("alice")
    with pytest.raises(Refused, match="current_leaf"):
        store.update_thread("alice", thread["id"], current_leaf="nope")
    assert store.revision("alice") == before and store.thread(thread["id"], "alice")["current_leaf"] == a["id"]


def test_concurrent_writers_lose_nothing(store):
    thread = store.create_thread("alice")

    def write(n):
        for i in range(20):
            store.add_message("alice", thread["id"], None, "user", [{"type": "text", "text": f"{n}-{i}"}])

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert len(store.tree(thread["id"], "alice")["messages"]) == 80
    assert store.revision("alice") == 81  # one revision per change, none lost


def test_a_database_of_the_previous_release_becomes_threads_with_nothing_lost(tmp_path):
    path = tmp_path / "sessions.db"
    shutil.copy(LEGACY, path)
    legacy = sqlite3.connect(path)
    sessions = legacy.execute("SELECT id, user FROM sessions").fetchall()
    counts = dict(legacy.execute("SELECT session_id, COUNT(*) FROM messages GROUP BY session_id").fetchall())
    legacy.close()
    store = ThreadStore(sqlite_url(path))
    try:
        for session_id, user in sessions:  # every session is a thread, by the same id, with its messages
            thread = store.thread(session_id, user)
            assert thread is not None and thread["message_count"] == counts.get(session_id, 0)
            assert len(store.path(session_id, user)) == counts.get(session_id, 0)
        alice = {t["title"]: t for t in store.list("alice")}
        path_a = store.path(alice["Name a river."]["id"], "alice")
        assert [(m["role"], text(m)) for m in path_a] == [
            ("user", "Name a river."), ("assistant", "The Rhine."), ("user", "And a longer one?"),
            ("assistant", "The Nile, 6,650 km.")]
        assert path_a[-1]["parts"][0] == {"type": "reasoning", "text": "The longest river is the Nile."}
        assert path_a[-1]["turn_id"] == "turn-a2" and path_a[-1]["usage"] == {"completion_tokens": 9}
        calls = store.path(alice["restored question"]["id"], "alice")[-1]["parts"]
        assert calls == [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                          "arguments": "{\"city\": \"Paris\"}"}]
        bob = store.list("bob")
        assert {m["status"] for t in bob for m in store.path(t["id"], "bob")} == {"complete", "cancelled"}
        assert store.revision("alice") == 2 and store.revision("bob") == 2
        store.close()
        store = ThreadStore(sqlite_url(path))  # opening again migrates nothing twice
        assert len(store.list("alice")) == 2
    finally:
        store.close()


def test_search_finds_words_on_any_branch_of_the_owners_threads_only(store):
    thread = store.create_thread("alice")
    q, a = ask(store, "alice", thread["id"], None, "Tell me about rivers", "The Danube flows east.")
    branch = store.add_message("alice", thread["id"], q["id"], "assistant",
                               [{"type": "text", "text": "The <b>Volga</b> is the longest in Europe."}])
    store.update_thread("alice", thread["id"], current_leaf=a["id"])  # the Volga branch is not shown
    other = store.create_thread("bob")
    ask(store, "bob", other["id"], None, "Volga?", "Volga indeed")
    hits = store.search("alice", "volga longest")
    assert [(h["thread_id"], h["message_id"]) for h in hits] == [(thread["id"], branch["id"])]
    assert "<mark>Volga</mark>" in hits[0]["snippet"] and "&lt;b&gt;" in hits[0]["snippet"]  # escaped
    assert [h["message_id"] for h in store.search("alice", "dan")] == [a["id"]]  # a word's start
    assert store.search("alice", "nile") == []
    store.edit_message("alice", thread["id"], a["id"], [{"type": "text", "text": "The Rhine flows north."}])
    assert store.search("alice", "danube") == [] and len(store.search("alice", "rhine")) == 1
    store.delete_thread("alice", thread["id"])
    assert store.search("alice", "volga") == []
    with pytest.raises(Refused, match="at least one word"):
        store.search("alice", "  ?! ")


def test_a_long_path_is_read_a_page_at_a_time_with_its_forks(store):
    thread = store.create_thread("alice")
    parent = None
    for n in range(30):
        parent = store.add_message("alice", thread["id"], parent, "user" if n % 2 == 0 else "assistant",
                                   [{"type": "text", "text": str(n)}])["id"]
    path = store.path(thread["id"], "alice")
    fork = store.add_message("alice", thread["id"], path[27]["id"], "user", [{"type": "text", "text": "28b"}])
    store.update_thread("alice", thread["id"], current_leaf=path[-1]["id"])
    newest = store.page(thread["id"], "alice", limit=5)
    assert [text(m) for m in newest["messages"]] == ["25", "26", "27", "28", "29"] and newest["has_more"]
    assert newest["siblings"] == {path[28]["id"]: [path[28]["id"], fork["id"]]}  # arrows for message 28
    older = store.page(thread["id"], "alice", limit=100, before=newest["messages"][0]["id"])
    assert [text(m) for m in older["messages"]] == [str(n) for n in range(25)] and not older["has_more"]
    other = store.page(thread["id"], "alice", limit=3, leaf=fork["id"])  # another branch, not shown
    assert [text(m) for m in other["messages"]] == ["26", "27", "28b"]
    with pytest.raises(Refused, match="before"):
        store.page(thread["id"], "alice", before=fork["id"])
    assert store.page(thread["id"], "mallory") is None


def test_an_imported_chain_of_5000_messages_reads_and_deletes_whole(store):
    tree = [{"id": f"m{n}", "parent_id": f"m{n - 1}" if n else None, "role": ("user", "assistant")[n % 2],
             "parts": [{"type": "text", "text": f"word{n}"}]} for n in range(5000)]
    summary = store.import_thread("alice", "long", "Long", tree, "m4999", created=1_700_000_000, updated=1_700_000_060)
    assert summary["current_leaf"] == "m4999" and summary["updated_at"].startswith("2023-11-14T22:14:20")
    assert [text(m) for m in store.page("long", "alice", limit=2)["messages"]] == ["word4998", "word4999"]
    assert [h["message_id"] for h in store.search("alice", "word2500")] == ["m2500"]
    assert store.delete_message("alice", "long", "m2") is True  # a branch 4,998 deep
    assert [m["id"] for m in store.path("long", "alice")] == ["m0", "m1"]
    assert store.delete_thread("alice", "long") is True
    assert store.thread("long", "alice") is None and store.search("alice", "word1") == []


def test_readers_go_on_while_a_writer_holds_the_lock(store):
    store.create_thread("alice", title="before")
    with store.writer.begin() as conn:  # a change under way (on SQLite: the write lock is taken)
        store._bump(conn, "alice")
        assert [t["title"] for t in store.list("alice")] == ["before"]  # read at once, from before it
        assert store.revision("alice") == 1
    assert store.revision("alice") == 2


def test_a_write_waits_for_a_long_one_however_long_it_takes(tmp_path, monkeypatch):
    """A reply saved while a big import holds SQLite's write lock waits for it: it is not refused
    with "database is locked" once SQLite's own wait (here cut to 50 ms) runs out."""
    monkeypatch.setattr("rill.conversations.store.SQLITE_BUSY_MS", 50)
    store = ThreadStore(sqlite_url(tmp_path / "threads.db"))
    thread = store.create_thread("alice")["id"]
    holding, failures = threading.Event(), []

    def long_import() -> None:
        with store.writing() as conn:
            store._bump(conn, "bob")
            holding.set()
            time.sleep(0.5)

    importer = threading.Thread(target=long_import)
    importer.start()
    holding.wait(5)
    try:
        ask(store, "alice", thread, None, "Saved during the import?", "Yes.")
    except Exception as err:  # noqa: BLE001 - the assertion below names it
        failures.append(repr(err))
    importer.join()
    assert failures == [] and len(store.path(thread, "alice")) == 2
    store.close()


def restore_keys(client, dump: dict) -> None:
    for key, entry in dump.items():
        kind, value = entry["type"], entry["value"]
        if kind == "hash":
            client.hset(key, mapping=value)
        elif kind == "list":
            client.rpush(key, *value)
        elif kind == "zset":
            client.zadd(key, dict(value))
        else:
            client.set(key, value)


def test_sessions_an_earlier_release_kept_in_redis_become_threads_on_start(make_app, redis_server, postgres_server):
    """A cluster of release 0.1.0 kept sessions in Redis; this release's first start moves them into
    the thread database, keeping ids, owners, order, parts, usage and times, and removes the keys."""
    dump = json.loads(LEGACY_REDIS.read_text())
    url = f"{redis_server.url}/6"  # a database of its own
    client = redis.Redis.from_url(url)
    client.flushdb()
    restore_keys(client, dump)
    database = postgres_server.database(f"t{uuid.uuid4().hex}")
    app = make_app(redis_url=url, database_url=database)
    store = app.extensions["rill"].threads
    alice = {t["title"]: t for t in store.list("alice")}
    assert set(alice) == {"Where does the Rhine rise?", ""} and [t["title"] for t in store.list("bob")] == [
        "Hello from Bob"]
    rhine = alice["Where does the Rhine rise?"]
    assert dump[f"rill:sessions:s:{rhine['id']}"]["value"]["user"] == "alice"  # the session's id, kept
    path_a = store.path(rhine["id"], "alice")
    assert [(m["role"], m["status"], m["turn_id"]) for m in path_a] == [
        ("user", "complete", "t1"), ("assistant", "complete", "t1"), ("user", "complete", "t2"),
        ("assistant", "cancelled", "t2")]
    assert path_a[1]["parts"] == [{"type": "reasoning", "text": "Geography."},
                                  {"type": "text", "text": "In the Swiss Alps."}]
    assert path_a[1]["usage"] == {"completion_tokens": 7} and path_a[1]["model"] == "local/smollm2"
    assert path_a[3]["parts"] == [{"type": "tool_call", "id": "call_1", "name": "lookup",
                                   "arguments": '{"river": "Rhine"}'}]
    stored = json.loads(dump[f"rill:sessions:s:{rhine['id']}:m"]["value"][0])["created_at"]
    assert path_a[0]["created_at"].startswith(stored[:19])
    assert client.keys("rill:sessions:*") == []  # moved once: nothing left to move again
    make_app(redis_url=url, database_url=database)
    assert len(store.list("alice")) == 2 and len(store.path(rhine["id"], "alice")) == 4


def test_a_database_of_the_previous_schema_keeps_everything_and_gains_files(tmp_path):
    path = tmp_path / "sessions.db"
    shutil.copy(THREADS_0003, path)
    store = ThreadStore(sqlite_url(path))
    try:
        [thread] = store.list("alice")
        tree = store.tree(thread["id"], "alice")
        assert [text(m) for m in tree["messages"]] == ["Which river flows through Basel?", "The Rhine.",
                                                       "The Rhine, at its knee."]
        assert tree["messages"][1]["parts"][0] == {"type": "reasoning", "text": "Swiss geography."}
        assert tree["messages"][1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 3}
        assert [text(m) for m in store.path(thread["id"], "alice")][-1] == "The Rhine, at its knee."
        assert len(store.shares_of("alice", thread["id"])) == 1
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0007"
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM files").scalar() == 0
    finally:
        store.close()


def test_share_links_of_the_previous_schema_pin_their_files(tmp_path):
    from rill.conversations.files import FileStore

    shutil.copy(THREADS_0004, tmp_path / "threads.db")
    shutil.copytree(FILES_0004, tmp_path / "files")
    store = ThreadStore(sqlite_url(tmp_path / "threads.db"))
    files = FileStore(store, tmp_path / "files")
    try:
        [thread] = store.list("alice")
        [share] = store.shares_of("alice", thread["id"])
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0007"
            assert sorted(conn.exec_driver_sql("SELECT file_id FROM share_files").scalars()) == sorted(
                [PICTURE_0004, NOTES_0004])
        question = store.path(thread["id"], "alice")[0]
        assert store.delete_message("alice", thread["id"], question["id"])
        picture = files.get(PICTURE_0004, "alice")
        assert picture is not None and files.for_model(PICTURE_0004, "alice", 100, len).media_type == "image/png"
        assert store.unshare("alice", thread["id"], share["token"])
        assert files.get(PICTURE_0004, "alice") is None and not files.blob(picture["sha256"]).exists()
    finally:
        store.close()


def test_threads_of_the_previous_schema_keep_their_messages_and_remember_no_tools(tmp_path):
    shutil.copy(THREADS_0005, tmp_path / "threads.db")
    store = ThreadStore(sqlite_url(tmp_path / "threads.db"))
    try:
        [thread] = store.list("alice")
        assert thread["mcp_servers"] == []
        path = store.path(thread["id"], "alice")
        assert [m["parts"][0]["type"] for m in path] == ["text", "tool_call"]
        assert path[1]["parts"][0]["arguments"] == '{"a": 2, "b": 3}'
        assert store.update_thread("alice", thread["id"], mcp_servers=["calc"])["mcp_servers"] == ["calc"]
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0007"
    finally:
        store.close()


def test_a_database_of_the_release_before_stored_responses_keeps_its_threads_and_stores_responses(tmp_path):
    from rill.conversations.responses import ResponseStore

    shutil.copy(THREADS_0006, tmp_path / "threads.db")
    store = ThreadStore(sqlite_url(tmp_path / "threads.db"))
    try:
        [thread] = store.list("alice")
        assert thread["title"] == "Rivers" and thread["mcp_servers"] == ["calc"]
        assert [m["parts"][0]["text"] for m in store.path(thread["id"], "alice")] == ["Name a river.", "The Nile."]
        responses = ResponseStore(store)
        responses.create("alice", {"id": "resp_1", "status": "completed", "previous_response_id": None, "output": []},
                         [{"type": "message", "role": "user", "content": "hi"}], "t1")
        assert responses.get("resp_1", "alice")["input"][0]["content"] == "hi"
        assert responses.get("resp_1", "bob") is None
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0007"
    finally:
        store.close()
