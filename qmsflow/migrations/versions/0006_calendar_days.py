"""The working calendar's overrides as rows: the one calendar authority of an installation.

``calendar_days``: each extra day off and make-up working day, with its name
(qmsflow/engine/calendar_store.py). The calendar file seeds it at ``qmsflow init``; the fingerprint of
these rows and of the ``holidays`` version the pending timers were planned with stays in ``meta``.

Revision ID: 0006
Revises: 0007 (0006 was named before 0007 reached main; the chain runs 0005, 0007, 0006)
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calendar_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('working', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_calendar_days'))
    )


def downgrade() -> None:
    op.drop_table('calendar_days')
