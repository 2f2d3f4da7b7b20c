"""Share links: a snapshot of a branch, readable by its unguessable token until revoked.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("thread_id", sa.String(64), sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("messages", sa.JSON, nullable=False),  # the path as it was when shared
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("shares_by_thread", "shares", ["thread_id"])


def downgrade() -> None:
    op.drop_table("shares")
