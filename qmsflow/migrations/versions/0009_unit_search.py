"""Unit search: each unit version's folded name and code, and its words for prefix search by index.

``unit_versions.search_folded`` and ``unit_search_words`` (one row per distinct word, folded and
marked, indexed for a range scan) back qmsflow/engine/unitsearch.py; the existing versions are
indexed here with the same fold the engine uses.

Revision ID: 0009_unit_search
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009_unit_search'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    word = sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql')
    with op.batch_alter_table('unit_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_folded', sa.String(length=300), server_default='', nullable=False))
    op.create_table('unit_search_words',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit_version_id', sa.Integer(), nullable=False),
    sa.Column('folded', word, nullable=False),
    sa.Column('marked_base', word, nullable=False),
    sa.Column('tone', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['unit_version_id'], ['unit_versions.id'], name=op.f('fk_unit_search_words_unit_version_id_unit_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unit_search_words'))
    )
    with op.batch_alter_table('unit_search_words', schema=None) as batch_op:
        batch_op.create_index('ix_unit_search_words_folded', ['folded', 'unit_version_id'], unique=False)
        batch_op.create_index('ix_unit_search_words_marked', ['marked_base', 'tone', 'unit_version_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_unit_search_words_unit_version_id'), ['unit_version_id'], unique=False)
    _index_existing_versions()


def _index_existing_versions() -> None:
    from qmsflow.engine.unitsearch import searchable_text, words

    bind = op.get_bind()
    versions = sa.table('unit_versions', sa.column('id'), sa.column('name'), sa.column('code'), sa.column('search_folded'))
    table = sa.table('unit_search_words', sa.column('unit_version_id'), sa.column('folded'), sa.column('marked_base'), sa.column('tone'))
    for version_id, name, code in bind.execute(sa.select(versions.c.id, versions.c.name, versions.c.code)).all():
        bind.execute(versions.update().where(versions.c.id == version_id).values(search_folded=searchable_text(name, code)))
        rows = {(w.folded, w.marked_base, w.tone) for w in words(f"{name} {code}")}
        if rows:
            bind.execute(table.insert(), [
                {"unit_version_id": version_id, "folded": f, "marked_base": m, "tone": t} for f, m, t in sorted(rows)
            ])


def downgrade() -> None:
    with op.batch_alter_table('unit_search_words', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unit_search_words_unit_version_id'))
        batch_op.drop_index('ix_unit_search_words_marked')
        batch_op.drop_index('ix_unit_search_words_folded')
    op.drop_table('unit_search_words')
    with op.batch_alter_table('unit_versions', schema=None) as batch_op:
        batch_op.drop_column('search_folded')
