"""Files: what users upload, a row each; the bytes live once per SHA-256 under RILL_DATA_DIR/files;
which messages refer to which files.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),  # sniffed from the bytes
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("width", sa.Integer),  # images only
        sa.Column("height", sa.Integer),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("files_by_sha256", "files", ["sha256"])
    op.create_index("files_by_owner", "files", ["owner", "created"])
    op.create_table(
        "message_files",
        sa.Column("message_id", sa.String(64), sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("file_id", sa.String(64), nullable=False),
    )
    op.create_index("message_files_by_file", "message_files", ["file_id"])
    op.create_index("message_files_by_message", "message_files", ["message_id"])


def downgrade() -> None:
    op.drop_table("message_files")
    op.drop_table("files")
