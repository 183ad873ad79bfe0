"""records.face_search: what the answer's face search could see (detector, smallest face in original pixels)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("records", sa.Column("face_search", sa.JSON))


def downgrade() -> None:
    op.drop_column("records", "face_search")
