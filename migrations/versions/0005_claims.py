"""claims: one collector per gateway, so that several collectors can share a database; a gateway's clock offset

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("gateway_name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("claimed_ms", sa.BigInteger(), nullable=False),
        sa.Column("until_ms", sa.BigInteger(), nullable=False),
        sa.Column("done_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("gateway_name", name=op.f("pk_claims")),
    )
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clock_offset_s", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_column("clock_offset_s")
    op.drop_table("claims")
