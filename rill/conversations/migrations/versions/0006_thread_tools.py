"""A thread remembers the MCP servers whose tools its turns use (a chat's `mcp_servers`); threads
of earlier releases use none.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("threads", sa.Column("mcp_servers", sa.JSON))


def downgrade() -> None:
    op.drop_column("threads", "mcp_servers")
