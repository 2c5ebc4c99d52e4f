"""what `envoylog check` said, and a log of the gateway sessions and tokens a collector opened

check_findings: each problem `check` found, since when, and when it last said it (once a day at most under
cron; a line when it clears). auth_log: a row per gateway session opened (`check_jwt`) and per token taken,
so that `check` can tell a refresh storm from the odd renewal; pruned as it is written.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from envoylog.db.types import UtcDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "check_findings",
        # By the config's name: a configured gateway that never answered has no row in gateways.
        sa.Column("gateway", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("said_at", UtcDateTime(), nullable=True),
        sa.Column("seen_at", UtcDateTime(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "kind", "subject", name=op.f("pk_check_findings")),
    )
    op.create_table(
        "auth_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_auth_log_gateway_id_gateways"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_log")),
    )
    op.create_index("ix_auth_log_gateway_at", "auth_log", ["gateway_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_auth_log_gateway_at", table_name="auth_log")
    op.drop_table("auth_log")
    op.drop_table("check_findings")
