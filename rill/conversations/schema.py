"""The conversation tables (SQLAlchemy Core): threads, their messages as a tree, one revision
counter per user, tombstones of deleted threads, share links, uploaded files. Alembic migrations
(migrations/versions) create and change them; this module is what the store queries."""
from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

ID = String(64)
OWNER = String(256)

threads = Table(
    "threads", metadata,
    Column("id", ID, primary_key=True),
    Column("owner", OWNER, nullable=False),
    Column("title", Text, nullable=False),
    Column("current_leaf", ID),  # the end of the path the model sees next (null: an empty thread)
    Column("revision", BigInteger, nullable=False),  # the owner's revision at the thread's last change
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("mcp_servers", JSON),  # the MCP servers its turns use (null: none)
    Index("threads_by_owner", "owner", "revision"),
)

messages = Table(
    "messages", metadata,
    Column("id", ID, primary_key=True),
    Column("thread_id", ID, ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("parent_id", ID),  # null: a root; the store keeps it in the thread (no foreign key: a cascade
    #                          down a chain of 10,000 messages would go past SQLite's trigger depth)
    Column("role", String(16), nullable=False),  # user | assistant | system | tool
    Column("parts", JSON, nullable=False),  # [{"type": text | reasoning | tool_call | tool_result | file, ...}]
    Column("text", Text, nullable=False),  # the text parts joined: what search reads
    Column("model", String(256)),
    Column("status", String(16), nullable=False),  # complete | cancelled | error | interrupted
    Column("usage", JSON),  # {"prompt_tokens", "completion_tokens", ...}
    Column("timings", JSON),  # {"ttft_ms", "duration_ms", "tokens_per_second"}
    Column("turn_id", ID),  # the turn that wrote it (replies, and the questions turns started with)
    Column("active_child", ID),  # the child shown below it: the branch chosen at this fork
    Column("created", Float, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Index("messages_by_thread", "thread_id", "created"),
    Index("messages_by_turn", "turn_id"),
)

revisions = Table(
    "revisions", metadata,
    Column("owner", OWNER, primary_key=True),
    Column("revision", BigInteger, nullable=False),
)

shares = Table(  # a snapshot of a branch, readable by its unguessable token until revoked
    "shares", metadata,
    Column("token", ID, primary_key=True),
    Column("owner", OWNER, nullable=False),
    Column("thread_id", ID, ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("title", Text, nullable=False),
    Column("messages", JSON, nullable=False),  # the path as it was when shared
    Column("created", Float, nullable=False),
    Index("shares_by_thread", "thread_id"),
)

deletions = Table(  # tombstones: what a device that synced before must forget
    "deletions", metadata,
    Column("owner", OWNER, nullable=False),
    Column("thread_id", ID, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Index("deletions_by_owner", "owner", "revision"),
)

files = Table(  # an upload; its bytes are stored once per sha256 (files.py)
    "files", metadata,
    Column("id", ID, primary_key=True),
    Column("owner", OWNER, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("type", String(128), nullable=False),  # sniffed from the bytes, never from the name
    Column("size", BigInteger, nullable=False),
    Column("name", Text, nullable=False),
    Column("width", Integer),  # images only
    Column("height", Integer),
    Column("created", Float, nullable=False),
    Index("files_by_sha256", "sha256"),
    Index("files_by_owner", "owner", "created"),
)

message_files = Table(  # which messages refer to which files (a file goes with the last of them)
    "message_files", metadata,
    Column("message_id", ID, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("file_id", ID, nullable=False),
    Index("message_files_by_file", "file_id"),
    Index("message_files_by_message", "message_id"),
)

share_files = Table(  # the files a share link's snapshot shows: kept while the link lives
    "share_files", metadata,
    Column("token", ID, ForeignKey("shares.token", ondelete="CASCADE"), nullable=False),
    Column("file_id", ID, nullable=False),
    Index("share_files_by_file", "file_id"),
    Index("share_files_by_token", "token"),
)

responses = Table(  # the Responses API's stored responses (/v1/responses with store: true)
    "responses", metadata,
    Column("id", ID, primary_key=True),  # resp_<turn id>
    Column("owner", OWNER, nullable=False),
    Column("previous_id", ID),  # the response it continues (null: none); gone once that one is deleted
    Column("turn_id", ID, nullable=False),
    Column("status", String(16), nullable=False),  # in_progress | completed | incomplete | failed | cancelled
    Column("response", JSON, nullable=False),  # the response object as last known
    Column("input", JSON, nullable=False),  # its own input items (the conversation before it is the chain's)
    Column("created", Float, nullable=False),
    Index("responses_by_owner", "owner", "created"),
)
