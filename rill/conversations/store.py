"""Threads on the server: one store on SQLAlchemy, SQLite in RILL_DATA_DIR by default and
PostgreSQL (RILL_DATABASE_URL) for several workers; its schema is Alembic's, migrated on open.

A thread is a tree: every message has a parent (none for a root), and each fork remembers the
child it shows (`active_child`), so the path from the root down the chosen children ends at the
thread's `current_leaf`, the conversation the model sees next. Every change is one transaction
that bumps its owner's revision: a device that synced at revision N asks for what changed since.
Each thread belongs to the user who made it: for anyone else it does not exist.
"""
from __future__ import annotations

import contextlib
import secrets
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, delete, event, func, insert, literal, or_, select, update
from sqlalchemy.engine import Connection

from ..refusals import Refused
from .feed import ChangeFeed
from .parts import file_ids, text_of, title_of
from .schema import deletions, message_files, messages, revisions, share_files, shares, threads
from .search import search

MIGRATIONS = Path(__file__).parent / "migrations"
PG_MIGRATION_LOCK = 0x52494C4C  # "RILL": one worker migrates, the others wait for it
SQLITE_BUSY_MS = 5000  # how long a write waits for another process's before "database is locked"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class ThreadStore:
    def __init__(self, url: str, feed: ChangeFeed | None = None):
        self.url = url
        self.feed = feed or ChangeFeed()  # told of every change once it is committed
        self.released = lambda file_ids: None  # told the files deleted messages referred to (files.py)
        self.engine = create_engine(url, pool_pre_ping=True)
        self.writer = self.engine.execution_options(rill_writes=True)  # the transactions that change things
        self._write_lock = contextlib.nullcontext()
        if self.engine.dialect.name == "sqlite":
            self._write_lock = threading.Lock()
            Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
            event.listen(self.engine, "connect", _sqlite_connection)
            event.listen(self.engine, "begin", _sqlite_begin)
        self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (a database of an earlier release included)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.writing() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    # -- reading ------------------------------------------------------------------------------

    def revision(self, owner: str) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(select(revisions.c.revision).where(revisions.c.owner == owner)) or 0

    def exists(self, thread_id: str, owner: str) -> bool:
        with self.engine.connect() as conn:
            return self._thread_row(conn, thread_id, owner) is not None

    def thread(self, thread_id: str, owner: str) -> dict | None:
        with self.engine.connect() as conn:
            row = self._thread_row(conn, thread_id, owner)
            return None if row is None else self._summary(conn, row)

    def list(self, owner: str) -> list[dict]:
        """The owner's threads, the most recently changed first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(threads).where(threads.c.owner == owner)
                                .order_by(threads.c.updated.desc(), threads.c.id)).all()
            return [self._summary(conn, row) for row in rows]

    def tree(self, thread_id: str, owner: str) -> dict | None:
        """The thread with all its messages, parents before children."""
        with self.engine.connect() as conn:
            row = self._thread_row(conn, thread_id, owner)
            if row is None:
                return None
            rows = conn.execute(select(messages).where(messages.c.thread_id == thread_id)
                                .order_by(messages.c.created, messages.c.id)).all()
            return {**self._summary(conn, row, len(rows)), "messages": [public(m) for m in rows]}

    def path(self, thread_id: str, owner: str, leaf: str | None = None) -> list[dict]:
        """The messages from the root down to `leaf` (the thread's current leaf when none is given)."""
        with self.engine.connect() as conn:
            row = self._thread_row(conn, thread_id, owner)
            if row is None:
                return []
            return [public(m) for m in self._path(conn, thread_id, leaf or row.current_leaf)]

    def page(self, thread_id: str, owner: str, limit: int = 50, before: str | None = None,
             leaf: str | None = None) -> dict | None:
        """The newest `limit` messages of the path down to `leaf` (the current leaf when none), or of
        the part of it above `before`: {"thread", "messages", "siblings", "has_more"}, where
        `siblings` gives, for each message shown that has any, its parent's children in order (so a
        thread of 10,000 messages opens without loading them all, branch arrows included)."""
        with self.engine.connect() as conn:
            row = self._thread_row(conn, thread_id, owner)
            if row is None:
                return None
            if leaf is not None and self._message_row(conn, thread_id, leaf) is None:
                raise Refused("invalid_request_error", f"leaf: no message {leaf!r} in thread {thread_id!r}")
            start = leaf or row.current_leaf
            if before is not None:
                walked = self._up(conn, thread_id, start, stop=before)
                if not walked or walked[-1].id != before:
                    raise Refused("invalid_request_error", f"before: message {before!r} is not on this path")
                start = walked[-1].parent_id
            above = self._up(conn, thread_id, start, limit=limit + 1)  # newest first, one more: is there more?
            shown = above[:limit]
            rows = self._rows(conn, [r.id for r in reversed(shown)])
            return {"thread": self._summary(conn, row), "messages": [public(m) for m in rows],
                    "siblings": self._siblings(conn, thread_id, shown), "has_more": len(above) > limit}

    def changes(self, owner: str, since: int) -> dict:
        """What changed after revision `since`: the threads (summaries) and the ids of deleted ones."""
        with self.engine.connect() as conn:
            now = conn.scalar(select(revisions.c.revision).where(revisions.c.owner == owner)) or 0
            if since > now:
                raise Refused("invalid_request_error",
                              f"since={since} is not a revision of yours (the newest is {now}): sync from 0")
            rows = conn.execute(select(threads).where(threads.c.owner == owner, threads.c.revision > since)
                                .order_by(threads.c.revision)).all()
            gone = conn.execute(select(deletions.c.thread_id).where(deletions.c.owner == owner,
                                                                   deletions.c.revision > since)).scalars().all()
            here = {row.id for row in rows}  # deleted, then imported again: it is here
            return {"revision": now, "threads": [self._summary(conn, row) for row in rows],
                    "deleted": sorted(set(gone) - here)}

    def search(self, owner: str, query: str, limit: int = 50) -> list[dict]:
        """The owner's messages with every word of `query`, on any branch: {thread_id, message_id,
        snippet (HTML: escaped text, matches in <mark>)}."""
        with self.engine.connect() as conn:
            return search(conn, owner, query, limit)

    def find_reply(self, thread_id: str, owner: str, turn_id: str) -> dict | None:
        """The reply a turn wrote in this thread."""
        with self.engine.connect() as conn:
            if self._thread_row(conn, thread_id, owner) is None:
                return None
            row = conn.execute(select(messages).where(messages.c.thread_id == thread_id, messages.c.turn_id == turn_id,
                                                      messages.c.role == "assistant")).first()
            return None if row is None else public(row)

    def message(self, thread_id: str, owner: str, message_id: str) -> dict | None:
        with self.engine.connect() as conn:
            if self._thread_row(conn, thread_id, owner) is None:
                return None
            row = self._message_row(conn, thread_id, message_id)
            return None if row is None else public(row)

    # -- writing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self):
        """A transaction that writes. SQLite lets one writer in at a time, and its own wait gives up
        after SQLITE_BUSY_MS (and polls: under load a writer lost the race for seconds): a reply
        saved during a long import failed with "database is locked". So this process's writers
        queue on a lock for as long as it takes; SQLite's wait is left to other processes."""
        with self._write_lock, self.writer.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _change(self, owner: str):
        """One transaction that bumps the owner's revision: (connection, revision). A refusal (or
        Unchanged) inside rolls it back, revision included; the feed hears of it once committed."""
        with self.writing() as conn:
            revision = self._bump(conn, owner)
            yield conn, revision
        self.feed.publish(owner, revision)

    def create_thread(self, owner: str, title: str = "", chain: list[dict] = (), thread_id: str | None = None) -> dict:
        """A new thread; `chain` gives it messages, each the child of the one before (a restore)."""
        now = time.time()
        with self._change(owner) as (conn, revision):
            thread_id = thread_id or uuid.uuid4().hex
            first = next((m for m in chain if m["role"] == "user"), None)
            conn.execute(insert(threads).values(
                id=thread_id, owner=owner, title=title or title_of(text_of(first["parts"]) if first else ""),
                current_leaf=None, revision=revision, created=now, updated=now))
            parent = None
            for fields in chain:
                parent = self._insert(conn, thread_id, parent, revision, **fields)["id"]
            if parent is not None:
                conn.execute(update(threads).where(threads.c.id == thread_id).values(current_leaf=parent))
            return self._summary(conn, self._thread_row(conn, thread_id, owner))

    def import_thread(self, owner: str, thread_id: str, title: str, tree: list[dict], leaf: str | None,
                      created: float | None = None, updated: float | None = None) -> dict:
        """A whole tree at once (an import): `tree` lists parents before children, each message with
        its id and parent_id (and, when known, its usage, turn_id and created); each fork shows its
        last child, except along the path to `leaf`."""
        now = time.time()
        created = created or now
        updated = min(updated or now, now)
        leaf = leaf if any(m["id"] == leaf for m in tree) else (tree[-1]["id"] if tree else None)
        parents = {m["id"]: m["parent_id"] for m in tree}
        chosen = {m["parent_id"]: m["id"] for m in tree if m["parent_id"] is not None}  # the last child
        at = leaf
        while parents.get(at) is not None:
            chosen[parents[at]] = at
            at = parents[at]
        with self._change(owner) as (conn, revision):
            first = next((m for m in tree if m["role"] == "user"), None)
            conn.execute(insert(threads).values(
                id=thread_id, owner=owner, title=title or title_of(text_of(first["parts"]) if first else ""),
                current_leaf=leaf, revision=revision, created=created, updated=updated))
            if tree:
                conn.execute(insert(messages), [
                    {**self._row(thread_id, m["parent_id"], revision, m["role"], m["parts"], id=m["id"],
                                 status=m.get("status", "complete"), model=m.get("model"), usage=m.get("usage"),
                                 turn_id=m.get("turn_id"), created=m.get("created") or created + n * 1e-3),
                     "active_child": chosen.get(m["id"])} for n, m in enumerate(tree)])
                links = [{"message_id": m["id"], "file_id": f} for m in tree for f in file_ids(m["parts"])]
                if links:
                    conn.execute(insert(message_files), links)
            return self._summary(conn, self._thread_row(conn, thread_id, owner))

    def fork(self, owner: str, thread_id: str, leaf: str) -> dict:
        """A new thread holding a copy of the path down to `leaf` (a branch taken on its own)."""
        path = self.path(thread_id, owner, leaf)
        if not path or path[-1]["id"] != leaf:
            raise Refused("invalid_request_error", f"leaf: no message {leaf!r} in thread {thread_id!r}")
        title = self.thread(thread_id, owner)["title"]
        chain = [{k: m[k] for k in ("role", "parts", "status", "model", "usage", "timings")} for m in path]
        return self.create_thread(owner, title=title, chain=chain)

    def add_message(self, owner: str, thread_id: str, parent_id: str | None, role: str, parts: list[dict],
                    **fields) -> dict:
        """A message under `parent_id` (none: a new root), which becomes the chosen child there and
        the thread's current leaf. `fields`: id, status, model, usage, timings, turn_id."""
        with self._change(owner) as (conn, revision):
            thread = self._owned(conn, thread_id, owner)
            if parent_id is not None and self._message_row(conn, thread_id, parent_id) is None:
                raise Refused("invalid_request_error", f"parent_id: no message {parent_id!r} in thread {thread_id!r}")
            message = self._insert(conn, thread_id, parent_id, revision, role=role, parts=parts, **fields)
            values = {"current_leaf": message["id"], "revision": revision, "updated": time.time()}
            if not thread.title and role == "user":
                values["title"] = title_of(text_of(parts))
            conn.execute(update(threads).where(threads.c.id == thread_id).values(**values))
            return message

    def edit_message(self, owner: str, thread_id: str, message_id: str, parts: list[dict]) -> dict:
        """New parts for a message, in place (an edit saved without asking again)."""
        with self._change(owner) as (conn, revision):
            self._owned(conn, thread_id, owner)
            if self._message_row(conn, thread_id, message_id) is None:
                raise Refused("message_not_found", f"no message {message_id!r} in thread {thread_id!r}")
            conn.execute(update(messages).where(messages.c.id == message_id).values(
                parts=parts, text=text_of(parts), revision=revision))
            released = set(conn.scalars(select(message_files.c.file_id)
                                        .where(message_files.c.message_id == message_id))) - set(file_ids(parts))
            conn.execute(delete(message_files).where(message_files.c.message_id == message_id))
            if links := [{"message_id": message_id, "file_id": f} for f in file_ids(parts)]:
                conn.execute(insert(message_files), links)
            conn.execute(update(threads).where(threads.c.id == thread_id).values(revision=revision,
                                                                                 updated=time.time()))
            edited = public(self._message_row(conn, thread_id, message_id))
        self.released(released)  # the files the edit took out, once no other message has them
        return edited

    def update_thread(self, owner: str, thread_id: str, title: str | None = None,
                      current_leaf: str | None = None, branch: str | None = None,
                      mcp_servers: list[str] | None = None) -> dict:
        """Rename, or choose the branch shown: `current_leaf` names its end, `branch` any message on
        it (the end is then found down the choice each fork below remembers). Every fork on the
        new path remembers the choice, so a reload or another device shows the same branch."""
        with self._change(owner) as (conn, revision):
            self._owned(conn, thread_id, owner)
            values = {"revision": revision, "updated": time.time()}
            if title is not None:
                values["title"] = title
            if mcp_servers is not None:
                values["mcp_servers"] = mcp_servers
            if branch is not None:
                if self._message_row(conn, thread_id, branch) is None:
                    raise Refused("invalid_request_error", f"branch: no message {branch!r} in thread {thread_id!r}")
                current_leaf = self._leaf_below(conn, branch, thread_id)
            if current_leaf is not None:
                path = self._path(conn, thread_id, current_leaf)
                if not path:
                    raise Refused("invalid_request_error",
                                  f"current_leaf: no message {current_leaf!r} in thread {thread_id!r}")
                for parent, child in zip(path, path[1:]):
                    if parent.active_child != child.id:
                        conn.execute(update(messages).where(messages.c.id == parent.id).values(active_child=child.id))
                values["current_leaf"] = current_leaf
            conn.execute(update(threads).where(threads.c.id == thread_id).values(**values))
            return self._summary(conn, self._thread_row(conn, thread_id, owner))

    def share(self, owner: str, thread_id: str, leaf: str | None = None) -> dict:
        """A snapshot of the path down to `leaf` (the current leaf when none), under a new token."""
        token = secrets.token_urlsafe(24)
        with self.writing() as conn:  # no message (and so no file) goes between the read and the pins
            thread = self.thread(thread_id, owner)
            if thread is None:
                raise Refused("thread_not_found", f"no thread {thread_id!r}")
            path = self.path(thread_id, owner, leaf)
            if leaf is not None and (not path or path[-1]["id"] != leaf):
                raise Refused("invalid_request_error", f"leaf: no message {leaf!r} in thread {thread_id!r}")
            snapshot = [{k: m[k] for k in ("role", "parts", "status", "model", "created_at")} for m in path]
            conn.execute(insert(shares).values(token=token, owner=owner, thread_id=thread_id, title=thread["title"],
                                               messages=snapshot, created=time.time()))
            if pinned := sorted({f for m in snapshot for f in file_ids(m["parts"])}):
                conn.execute(insert(share_files), [{"token": token, "file_id": f} for f in pinned])
        return {"token": token, "thread_id": thread_id, "title": thread["title"], "message_count": len(snapshot)}

    def shares_of(self, owner: str, thread_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(shares.c.token, shares.c.created).where(
                shares.c.owner == owner, shares.c.thread_id == thread_id).order_by(shares.c.created)).all()
            return [{"token": token, "created_at": iso(created)} for token, created in rows]

    def shared(self, token: str) -> dict | None:
        """What a share link shows: {title, messages, owner}; None once revoked (or its thread deleted)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(shares).where(shares.c.token == token)).first()
            return None if row is None else {"title": row.title, "messages": row.messages,
                                             "shared_at": iso(row.created), "owner": row.owner}

    def unshare(self, owner: str, thread_id: str, token: str) -> bool:
        with self.writing() as conn:
            released = set(conn.scalars(select(share_files.c.file_id).where(share_files.c.token == token)))
            gone = conn.execute(delete(shares).where(shares.c.token == token, shares.c.owner == owner,
                                                     shares.c.thread_id == thread_id)).rowcount > 0
        if gone:
            self.released(released)  # the files only this link still showed
        return gone

    def delete_thread(self, owner: str, thread_id: str) -> bool:
        try:
            with self._change(owner) as (conn, revision):
                if self._thread_row(conn, thread_id, owner) is None:
                    raise Unchanged
                released = set(conn.scalars(select(message_files.c.file_id).join(
                    messages, messages.c.id == message_files.c.message_id).where(messages.c.thread_id == thread_id)))
                released.update(conn.scalars(select(share_files.c.file_id).join(
                    shares, shares.c.token == share_files.c.token).where(shares.c.thread_id == thread_id)))
                conn.execute(delete(shares).where(shares.c.thread_id == thread_id))
                conn.execute(delete(messages).where(messages.c.thread_id == thread_id))
                conn.execute(delete(threads).where(threads.c.id == thread_id))
                conn.execute(insert(deletions).values(owner=owner, thread_id=thread_id, revision=revision))
        except Unchanged:
            return False
        self.released(released)
        return True

    def delete_message(self, owner: str, thread_id: str, message_id: str) -> bool:
        """Delete a message and every message below it (a branch). Where the current leaf was in
        it, the thread shows the branch its parent chooses next (or ends at the parent)."""
        try:
            with self._change(owner) as (conn, revision):
                thread = self._owned(conn, thread_id, owner)
                target = self._message_row(conn, thread_id, message_id)
                if target is None:
                    raise Unchanged
                rows = conn.execute(select(messages.c.id, messages.c.parent_id)
                                    .where(messages.c.thread_id == thread_id)).all()
                doomed = descendants({row.id: row.parent_id for row in rows}, message_id)
                released = set()
                for ids in chunks(sorted(doomed)):
                    released.update(conn.scalars(select(message_files.c.file_id)
                                                 .where(message_files.c.message_id.in_(ids))))
                    conn.execute(delete(messages).where(messages.c.id.in_(ids)))
                values = {"revision": revision, "updated": time.time()}
                if target.parent_id is not None:
                    sibling = conn.scalar(select(messages.c.id).where(messages.c.parent_id == target.parent_id)
                                          .order_by(messages.c.created.desc()).limit(1))
                    conn.execute(update(messages).where(messages.c.id == target.parent_id)
                                 .values(active_child=sibling))
                if thread.current_leaf in doomed:
                    start = target.parent_id or conn.scalar(  # a root went: the newest other root's branch
                        select(messages.c.id).where(messages.c.thread_id == thread_id, messages.c.parent_id.is_(None))
                        .order_by(messages.c.created.desc()).limit(1))
                    values["current_leaf"] = self._leaf_below(conn, start, thread_id)
                conn.execute(update(threads).where(threads.c.id == thread_id).values(**values))
        except Unchanged:
            return False
        self.released(released)
        return True

    # -- helpers ------------------------------------------------------------------------------

    def _bump(self, conn: Connection, owner: str) -> int:
        """The owner's next revision (this transaction's)."""
        upsert = _upsert(conn)(revisions).values(owner=owner, revision=1)
        upsert = upsert.on_conflict_do_update(index_elements=[revisions.c.owner],
                                              set_={"revision": revisions.c.revision + 1})
        return conn.execute(upsert.returning(revisions.c.revision)).scalar_one()

    def _insert(self, conn: Connection, thread_id: str, parent_id: str | None, revision: int, role: str,
                parts: list[dict], id: str | None = None, status: str = "complete", model: str | None = None,
                usage: dict | None = None, timings: dict | None = None, turn_id: str | None = None,
                created: float | None = None) -> dict:
        row = self._row(thread_id, parent_id, revision, role, parts, id, status, model, usage, timings, turn_id,
                        created)
        conn.execute(insert(messages).values(**row))
        if links := [{"message_id": row["id"], "file_id": f} for f in file_ids(parts)]:
            conn.execute(insert(message_files), links)
        if parent_id is not None:
            conn.execute(update(messages).where(messages.c.id == parent_id).values(active_child=row["id"]))
        return public(row)

    @staticmethod
    def _row(thread_id: str, parent_id: str | None, revision: int, role: str, parts: list[dict], id: str | None = None,
             status: str = "complete", model: str | None = None, usage: dict | None = None,
             timings: dict | None = None, turn_id: str | None = None, created: float | None = None) -> dict:
        return {"id": id or uuid.uuid4().hex, "thread_id": thread_id, "parent_id": parent_id, "role": role,
                "parts": parts, "text": text_of(parts), "model": model, "status": status, "usage": usage,
                "timings": timings, "turn_id": turn_id, "active_child": None, "created": created or time.time(),
                "revision": revision}

    @staticmethod
    def _thread_row(conn: Connection, thread_id: str, owner: str):
        return conn.execute(select(threads).where(threads.c.id == thread_id, threads.c.owner == owner)).first()

    def _owned(self, conn: Connection, thread_id: str, owner: str):
        row = self._thread_row(conn, thread_id, owner)
        if row is None:
            raise Refused("thread_not_found", f"no thread {thread_id!r}")
        return row

    @staticmethod
    def _message_row(conn: Connection, thread_id: str, message_id: str):
        return conn.execute(select(messages).where(messages.c.id == message_id,
                                                   messages.c.thread_id == thread_id)).first()

    @staticmethod
    def _up(conn: Connection, thread_id: str, start: str | None, limit: int | None = None,
            stop: str | None = None) -> list:
        """(id, parent_id) from `start` up towards the root, `start` first: at most `limit` of
        them, ending at `stop` where it is met. One recursive query, whatever the tree's size."""
        if start is None:
            return []
        up = select(messages.c.id, messages.c.parent_id, literal(1).label("n")).where(
            messages.c.id == start, messages.c.thread_id == thread_id).cte("up", recursive=True)
        step = select(messages.c.id, messages.c.parent_id, (up.c.n + 1).label("n")).where(
            messages.c.id == up.c.parent_id)
        if limit is not None:
            step = step.where(up.c.n < limit)
        if stop is not None:
            step = step.where(up.c.id != stop)
        up = up.union_all(step)
        return conn.execute(select(up.c.id, up.c.parent_id).order_by(up.c.n)).all()

    @staticmethod
    def _siblings(conn: Connection, thread_id: str, shown: list) -> dict[str, list[str]]:
        """For each message shown that has any, its parent's children in order (branch arrows)."""
        parents = {r.parent_id for r in shown}
        if not parents:
            return {}
        known = [p for p in parents if p is not None]
        where = or_(messages.c.parent_id.in_(known), messages.c.parent_id.is_(None)) if None in parents \
            else messages.c.parent_id.in_(known)
        children: dict[str | None, list[str]] = {}
        for child in conn.execute(select(messages.c.id, messages.c.parent_id)
                                  .where(messages.c.thread_id == thread_id, where)
                                  .order_by(messages.c.created, messages.c.id)):
            children.setdefault(child.parent_id, []).append(child.id)
        return {r.id: children[r.parent_id] for r in shown if len(children.get(r.parent_id, ())) > 1}

    @classmethod
    def _path_ids(cls, conn: Connection, thread_id: str, leaf: str | None) -> list[str]:
        return [r.id for r in reversed(cls._up(conn, thread_id, leaf))]

    @staticmethod
    def _rows(conn: Connection, ids: list[str]) -> list:
        """Whole message rows, in the order of `ids`."""
        found = {}
        for chunk in chunks(ids):
            found.update((row.id, row) for row in conn.execute(select(messages).where(messages.c.id.in_(chunk))))
        return [found[i] for i in ids]

    @classmethod
    def _path(cls, conn: Connection, thread_id: str, leaf: str | None) -> list:
        return cls._rows(conn, cls._path_ids(conn, thread_id, leaf))

    @staticmethod
    def _leaf_below(conn: Connection, message_id: str | None, thread_id: str) -> str | None:
        """Down the chosen children from a message, to the end of that branch (one query)."""
        if message_id is None:
            return None
        down = select(messages.c.id, messages.c.active_child, literal(1).label("n")).where(
            messages.c.id == message_id, messages.c.thread_id == thread_id).cte("down", recursive=True)
        down = down.union_all(select(messages.c.id, messages.c.active_child, (down.c.n + 1).label("n"))
                              .where(messages.c.id == down.c.active_child))
        return conn.scalar(select(down.c.id).order_by(down.c.n.desc()).limit(1))

    @staticmethod
    def _summary(conn: Connection, row, count: int | None = None) -> dict:
        if count is None:
            count = conn.scalar(select(func.count()).select_from(messages).where(messages.c.thread_id == row.id))
        return {"id": row.id, "title": row.title, "current_leaf": row.current_leaf, "revision": row.revision,
                "created_at": iso(row.created), "updated_at": iso(row.updated), "message_count": count,
                "mcp_servers": row.mcp_servers or []}


class Unchanged(Exception):
    """Nothing to change after all: the transaction (and its revision) is rolled back."""


def public(row) -> dict:
    m = row if isinstance(row, dict) else row._mapping
    return {"id": m["id"], "parent_id": m["parent_id"], "role": m["role"], "parts": m["parts"], "status": m["status"],
            "model": m["model"], "usage": m["usage"], "timings": m["timings"], "turn_id": m["turn_id"],
            "active_child": m["active_child"], "created_at": iso(m["created"]), "revision": m["revision"]}


def descendants(parents: dict[str, str | None], root: str) -> set[str]:
    children: dict[str | None, list[str]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [root]
    while todo:
        at = todo.pop()
        found.add(at)
        todo += children.get(at, [])
    return found


def chunks(items: list, size: int = 500):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _upsert(conn: Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    return sqlite_insert


def _sqlite_begin(conn) -> None:
    """A writer's transaction takes the write lock at once (no lock upgrade can fail half-way);
    a reader's takes none (WAL: it reads a snapshot, never waiting for the writer)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("rill_writes") else "BEGIN")


def _sqlite_connection(dbapi_connection, _record) -> None:
    """WAL (readers never wait for the writer), foreign keys on, transactions begun by the engine
    (_sqlite_begin), a wait when another process writes."""
    dbapi_connection.isolation_level = None
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", f"busy_timeout={SQLITE_BUSY_MS}"):
        dbapi_connection.execute(f"PRAGMA {pragma}")
