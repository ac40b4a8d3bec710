"""Evidence uploads and the administrative log with its chain head.

``evidence_uploads``: one row per upload, staged by its uploader and attached to a case, or purged
when it expires (qmsflow/engine/evidence.py). ``admin_log``: the installation's one HMAC-chained log
of administrative changes, and ``admin_log_head`` the row that keeps its head and length
(qmsflow/engine/adminlog.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('evidence_uploads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uploader', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('staged_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('attached_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_evidence_uploads_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evidence_uploads'))
    )
    with op.batch_alter_table('evidence_uploads', schema=None) as batch_op:
        batch_op.create_index('ix_evidence_uploads_case_id_expires_at', ['case_id', 'expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_evidence_uploads_sha256'), ['sha256'], unique=False)

    op.create_table('admin_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object_kind', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=False),
    sa.Column('before', _JSON, nullable=True),
    sa.Column('after', _JSON, nullable=True),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_log')),
    sa.UniqueConstraint('seq', name=op.f('uq_admin_log_seq'))
    )
    with op.batch_alter_table('admin_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_log_at'), ['at'], unique=False)

    op.create_table('admin_log_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.Column('head', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_log_head'))
    )


def downgrade() -> None:
    op.drop_table('admin_log_head')
    with op.batch_alter_table('admin_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_log_at'))
    op.drop_table('admin_log')
    with op.batch_alter_table('evidence_uploads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evidence_uploads_sha256'))
        batch_op.drop_index('ix_evidence_uploads_case_id_expires_at')
    op.drop_table('evidence_uploads')
