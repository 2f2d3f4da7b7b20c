"""Threads as trees of messages made of parts; sessions of earlier releases become threads.

Revision ID: 0001
Revises:
"""
import json

import sqlalchemy as sa
from alembic import op

from rill.conversations.legacy import session_message
from rill.conversations.parts import title_of

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID, OWNER = sa.String(64), sa.String(256)


def upgrade() -> None:
    legacy = sa.inspect(op.get_bind()).has_table("sessions")  # a database written by release 0.1.0
    if legacy:
        op.rename_table("messages", "legacy_messages")
    threads = op.create_table(
        "threads",
        sa.Column("id", ID, primary_key=True),
        sa.Column("owner", OWNER, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("current_leaf", ID),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )
    op.create_index("threads_by_owner", "threads", ["owner", "revision"])
    messages = op.create_table(
        "messages",
        sa.Column("id", ID, primary_key=True),
        sa.Column("thread_id", ID, sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("parent_id", ID),  # no foreign key: see schema.py
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("parts", sa.JSON, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("model", sa.String(256)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("usage", sa.JSON),
        sa.Column("timings", sa.JSON),
        sa.Column("turn_id", ID),
        sa.Column("active_child", ID),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.create_index("messages_by_thread", "messages", ["thread_id", "created"])
    op.create_index("messages_by_turn", "messages", ["turn_id"])
    revisions = op.create_table(
        "revisions",
        sa.Column("owner", OWNER, primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "deletions",
        sa.Column("owner", OWNER, nullable=False),
        sa.Column("thread_id", ID, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.create_index("deletions_by_owner", "deletions", ["owner", "revision"])
    if legacy:
        import_sessions(threads, messages, revisions)
        op.drop_table("legacy_messages")
        op.drop_table("sessions")


def import_sessions(threads, messages, revisions) -> None:
    """Each session of the old release becomes a thread with the same id (clients keep using it as
    their session_id), its messages a chain in their order, made of parts."""
    bind = op.get_bind()
    sessions = bind.execute(sa.text("SELECT id, user, created, updated FROM sessions ORDER BY touched")).all()
    bodies: dict[str, list[dict]] = {}
    for session_id, body in bind.execute(sa.text(
            "SELECT session_id, body FROM legacy_messages ORDER BY session_id, position")):
        bodies.setdefault(session_id, []).append(json.loads(body))
    last_revision: dict[str, int] = {}
    thread_rows, message_rows = [], []
    for session_id, owner, created, updated in sessions:
        revision = last_revision[owner] = last_revision.get(owner, 0) + 1
        parent = None
        for body in bodies.get(session_id, []):
            row = {**session_message(body, created), "thread_id": session_id, "parent_id": parent,
                   "text": body.get("content", ""), "timings": None, "active_child": None, "revision": revision}
            if parent is not None:
                message_rows[-1]["active_child"] = row["id"]
            message_rows.append(row)
            parent = row["id"]
        first = next((b["content"] for b in bodies.get(session_id, []) if b.get("role") == "user"), "")
        thread_rows.append({"id": session_id, "owner": owner, "title": title_of(first), "current_leaf": parent,
                            "revision": revision, "created": created, "updated": updated})
    op.bulk_insert(threads, thread_rows)
    op.bulk_insert(messages, message_rows)
    op.bulk_insert(revisions, [{"owner": owner, "revision": n} for owner, n in last_revision.items()])


def downgrade() -> None:
    raise NotImplementedError("threads do not go back to sessions: restore a backup of the database instead")
