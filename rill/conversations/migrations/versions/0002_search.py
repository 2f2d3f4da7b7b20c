"""Full-text search over messages: SQLite's FTS5 (kept in step by triggers), PostgreSQL's text
search (a stored tsvector of the text, under a GIN index: ranking reads it instead of parsing
every matching message again).

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE messages ADD COLUMN search tsvector "
                   "GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED")
        op.execute("CREATE INDEX messages_search ON messages USING GIN (search)")
        return
    op.execute("CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='rowid', "
               "tokenize='unicode61 remove_diacritics 2')")
    op.execute("INSERT INTO messages_fts (rowid, text) SELECT rowid, text FROM messages")
    op.execute("""CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
                    INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text); END""")
    op.execute("""CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
                    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text); END""")
    op.execute("""CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
                    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
                    INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX messages_search")
        op.execute("ALTER TABLE messages DROP COLUMN search")
        return
    for trigger in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER messages_fts_{trigger}")
    op.execute("DROP TABLE messages_fts")
