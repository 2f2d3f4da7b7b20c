"""Share links pin the files their snapshot shows: a file stays while a link shows it, even after
the messages that had it are deleted. Links made before this are linked to their files here.

Revision ID: 0005
Revises: 0004
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    share_files = op.create_table(
        "share_files",
        sa.Column("token", sa.String(64), sa.ForeignKey("shares.token", ondelete="CASCADE"), nullable=False),
        sa.Column("file_id", sa.String(64), nullable=False),
    )
    op.create_index("share_files_by_file", "share_files", ["file_id"])
    op.create_index("share_files_by_token", "share_files", ["token"])
    conn = op.get_bind()
    links = []
    for token, snapshot in conn.execute(sa.text("SELECT token, messages FROM shares")):
        messages = json.loads(snapshot) if isinstance(snapshot, str) else snapshot
        found = {p["file_id"] for m in messages for p in m["parts"] if p.get("type") == "file"}
        links += [{"token": token, "file_id": file_id} for file_id in sorted(found)]
    if links:
        op.bulk_insert(share_files, links)


def downgrade() -> None:
    op.drop_table("share_files")
