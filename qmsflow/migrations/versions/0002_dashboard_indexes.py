"""Indexes for the dashboard: deadlines by due date, open escalations by level, open cases by state.

The dashboard's "next 30 days of deadlines" and "overdue cases by supervising authority" select
pending timers by due date, "open escalations" pending timers past ladder level 0, and "cases by
stage" counts open cases per workflow state (a partial index that covers the count, so SQLite need
not visit the table). bench/RESULTS.md shows each query with and without its index at 70,000 units.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('timers', schema=None) as batch_op:
        batch_op.create_index('ix_timers_status_due_date', ['status', 'due_date'], unique=False)
        batch_op.create_index('ix_timers_status_level', ['status', 'level'], unique=False)
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(
            'ix_cases_open_stage', ['workflow', 'workflow_version', 'state'], unique=False,
            sqlite_where=sa.text('closed_at IS NULL'), postgresql_where=sa.text('closed_at IS NULL'),
        )


def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_open_stage')
    with op.batch_alter_table('timers', schema=None) as batch_op:
        batch_op.drop_index('ix_timers_status_level')
        batch_op.drop_index('ix_timers_status_due_date')
