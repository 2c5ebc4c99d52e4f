"""runs: partial indexes for `status` on a fleet (each gateway's last error; runs without a gateway)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_ERROR = sa.text("error IS NOT NULL")
UNATTRIBUTED = sa.text("gateway_id IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_gateway_error",
            ["gateway_id", "started_at"],
            unique=False,
            sqlite_where=HAS_ERROR,
            postgresql_where=HAS_ERROR,
        )
        batch_op.create_index(
            "ix_runs_unattributed",
            ["gateway_name", "started_at"],
            unique=False,
            sqlite_where=UNATTRIBUTED,
            postgresql_where=UNATTRIBUTED,
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_unattributed")
        batch_op.drop_index("ix_runs_gateway_error")
