"""One open case per unit where the definition says so; leases for the emails a sender is sending.

``cases.open_key`` holds ``Definition.open_key`` of a case's opening data (``open_cases`` in the
workflow file): a partial unique index on (unit_id, open_key) over open cases makes a second open
``qms_lifecycle`` case for one unit impossible, whoever writes it. Existing open cases are keyed
from the packaged definitions; where a unit already holds two open cases with one key, the oldest
keeps it and the others are left without one (so the index can be built) and are reported by id:
in a warning and in the ``meta`` row ``open_case_duplicates``, for an officer to withdraw or
supersede.

``email_messages.claimed_until`` is a sender's lease: it claims a batch and commits, sends outside
any transaction, then records the outcome; a sender that died leaves the lease to run out.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('open_key', sa.String(length=255), nullable=True))
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_until', sa.DateTime(), nullable=True))
    duplicates = _key_open_cases()
    if duplicates:
        log.warning(
            "open cases that break their workflow's open_cases rule (left without an open key): %s",
            ", ".join(f"case {case_id} (unit {unit_id}, like case {kept})" for case_id, unit_id, kept in duplicates),
        )
        meta = sa.table('meta', sa.column('key', sa.String), sa.column('value', sa.Text))
        op.execute(meta.delete().where(meta.c.key == 'open_case_duplicates'))
        op.bulk_insert(meta, [{'key': 'open_case_duplicates', 'value': json.dumps([c for c, _, _ in duplicates])}])
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(
            'uq_cases_open_key', ['unit_id', 'open_key'], unique=True,
            sqlite_where=sa.text('closed_at IS NULL AND open_key IS NOT NULL'),
            postgresql_where=sa.text('closed_at IS NULL AND open_key IS NOT NULL'),
        )


def _key_open_cases() -> list[tuple[int, int, int]]:
    """Set open_key on every open case a packaged definition knows; return (case, unit, kept case) duplicates."""
    from qmsflow.engine.definitions import load_directory
    from qmsflow.workflows import DIRECTORY

    definitions = {d.key: d for d in load_directory(DIRECTORY)[0]}
    bind = op.get_bind()
    cases = sa.table(
        'cases', sa.column('id', sa.Integer), sa.column('unit_id', sa.Integer), sa.column('workflow', sa.String),
        sa.column('workflow_version', sa.Integer), sa.column('data', sa.JSON), sa.column('closed_at', sa.DateTime),
        sa.column('open_key', sa.String),
    )
    rows = bind.execute(
        sa.select(cases.c.id, cases.c.unit_id, cases.c.workflow, cases.c.workflow_version, cases.c.data)
        .where(cases.c.closed_at.is_(None))
        .order_by(cases.c.id)
    ).all()
    held: dict[tuple[int, str], int] = {}
    duplicates = []
    for case_id, unit_id, workflow, version, data in rows:
        definition = definitions.get((workflow, version))
        if definition is None:
            continue
        key = definition.open_key(data if isinstance(data, dict) else json.loads(data or "{}"))
        if key is None:
            continue
        if (unit_id, key) in held:
            duplicates.append((case_id, unit_id, held[(unit_id, key)]))
            continue
        held[(unit_id, key)] = case_id
        bind.execute(cases.update().where(cases.c.id == case_id).values(open_key=key))
    return duplicates


def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('uq_cases_open_key')
        batch_op.drop_column('open_key')
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_column('claimed_until')
