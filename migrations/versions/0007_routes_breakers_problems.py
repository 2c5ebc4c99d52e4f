"""token routes, endpoint breakers and the problems cron was told about

auth: the cloud route that last gave a token (tried first next time) and since when cloud attempts fail.
breakers: an endpoint that timed out is skipped for a growing pause, so one hanging endpoint does not eat
every run. problems: what a run has said about a lasting problem, so later runs stay silent until it clears.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from envoylog.db.types import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("auth", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cloud_route", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("cloud_failing_since", UtcDateTime(), nullable=True))
    op.create_table(
        "breakers",
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=100), nullable=False),
        sa.Column("timeouts", sa.Integer(), nullable=False),
        sa.Column("open_until", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_breakers_gateway_id_gateways"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("gateway_id", "path", name=op.f("pk_breakers")),
    )
    op.create_table(
        "problems",
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("said_at", UtcDateTime(), nullable=True),
        sa.Column("seen_at", UtcDateTime(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_problems_gateway_id_gateways"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("gateway_id", "kind", "subject", name=op.f("pk_problems")),
    )


def downgrade() -> None:
    op.drop_table("problems")
    op.drop_table("breakers")
    with op.batch_alter_table("auth", schema=None) as batch_op:
        batch_op.drop_column("cloud_failing_since")
        batch_op.drop_column("cloud_route")
