"""Province speed: an index on the history's (event, at), for the announcements of a period.

The dashboard's "announced by month" (qmsflow/engine/province.py) reads the ``announce`` rows of
the last 24 months; without this index both planners walked every history row of those months
through ``ix_history_at`` (SQLite) or scanned the whole table (PostgreSQL). See
bench/province_pages.py and bench/RESULTS.md.

Revision ID: 0017_province_speed
Revises: 0013_reorganisations
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0017_province_speed"
down_revision = "0013_reorganisations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_history_event_at", "history", ["event", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_history_event_at", table_name="history")
