"""Reorganisations: each applied operation of a mapping file, with its hash (qmsflow/engine/reorganize.py).

An operation applied again with the same hash changes nothing; one with the same key and another
hash is refused with the difference. ``effective`` is the day it took effect, ``applied_at`` when it
was recorded (both kept, so a backdated operation says so).

Revision ID: 0013_reorganisations
Revises: 0011_webhooks
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_reorganisations'
# The shared contract names the parent "0008_sign_in"; the stored revision id of 0008 is "0008".
down_revision = "0011_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reorganisation_operations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('op_key', sa.String(length=128), nullable=False),
    sa.Column('op_hash', sa.String(length=64), nullable=False),
    sa.Column('operation', sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('effective', sa.Date(), nullable=False),
    sa.Column('applied_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('backdated', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reorganisation_operations')),
    sa.UniqueConstraint('op_key', name=op.f('uq_reorganisation_operations_op_key')),
    )


def downgrade() -> None:
    op.drop_table('reorganisation_operations')
