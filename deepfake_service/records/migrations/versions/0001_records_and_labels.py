"""records and labels: one row per answered analysis, append-only human labels

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(200)),
        sa.Column("route", sa.String(40)),
        sa.Column("sha256", sa.String(64)),
        sa.Column("size_bytes", sa.Integer),
        sa.Column("media", sa.String(10)),
        sa.Column("pdq", sa.String(64)),
        sa.Column("pdq_quality", sa.Integer),
        sa.Column("frame_hashes", sa.JSON),
        sa.Column("model", sa.String(200)),
        sa.Column("version", sa.String(50)),
        sa.Column("weights_sha256", sa.String(64)),
        sa.Column("demo", sa.Boolean),
        sa.Column("runtime", sa.String(40)),
        sa.Column("precision", sa.String(20)),
        sa.Column("verdict", sa.String(20)),
        sa.Column("p_fake", sa.Float),
        sa.Column("labels", sa.JSON),
        sa.Column("logits", sa.JSON),
        sa.Column("decision", sa.JSON),
        sa.Column("subjects", sa.Integer),
        sa.Column("provenance", sa.JSON),
        sa.Column("declared_ai", sa.Boolean),
        sa.Column("match", sa.JSON),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error", sa.String(200)),
    )
    op.create_index("ix_records_created_at", "records", ["created_at"])
    op.create_index("ix_records_sha256", "records", ["sha256"])
    op.create_index("ix_records_verdict", "records", ["verdict"])
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(32), sa.ForeignKey("records.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(10), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_labels_record_id", "labels", ["record_id"])


def downgrade() -> None:
    op.drop_table("labels")
    op.drop_table("records")
