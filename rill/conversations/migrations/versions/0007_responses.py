"""Stored responses of the Responses API (/v1/responses with store: true); databases of earlier
releases have none.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("previous_id", sa.String(64)),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response", sa.JSON, nullable=False),
        sa.Column("input", sa.JSON, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("responses_by_owner", "responses", ["owner", "created"])


def downgrade() -> None:
    op.drop_index("responses_by_owner", "responses")
    op.drop_table("responses")
