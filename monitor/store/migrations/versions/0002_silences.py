"""Silences, and the silence that held an alert back.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(200)),
        sa.Column("starts_ms", sa.BigInteger, nullable=False),
        sa.Column("ends_ms", sa.BigInteger, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_silences_rule", "silences", ["rule", "ends_ms"])
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("silence_id", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("silence_id")
    op.drop_index("ix_silences_rule", "silences")
    op.drop_table("silences")
