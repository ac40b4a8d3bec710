"""Units as identities with dated attributes; successions; periods the database keeps apart.

``unit_versions`` holds a unit's name, official code, kind and lead flag over a period; ``units``
keeps only the identity and its life. Each unit's present attributes become its first version,
from the unit's ``valid_from`` to its ``valid_to``. ``unit_successions`` links a unit to the one it
took over from, with the date.

The database itself refuses (each tested with raw SQL in tests/engine/test_unit_identity.py):

- ``ex_unit_versions_code``: one official code on two versions whose periods overlap;
- ``ex_unit_versions_unit``: two versions of one unit whose periods overlap;
- ``ex_unit_versions_lead``: two lead units on one day;
- ``ex_unit_parents_unit``: two parent links of one unit whose periods overlap.

On PostgreSQL these are ``EXCLUDE USING gist`` constraints over ``daterange(valid_from, valid_to)``
(``btree_gist`` gives ``=`` on integers and text a gist operator class); on SQLite they are
``BEFORE INSERT`` and ``BEFORE UPDATE`` triggers that abort with the constraint's name, which
qmsflow/engine/db.py turns into ``PeriodOverlap`` on both backends.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None

_END = "'9999-12-31'"  # SQLite stores dates as ISO text, so an open end compares as the last day

_PERIOD = "daterange(valid_from, valid_to) WITH &&"  # '[)': valid_to is exclusive, NULL is open-ended

# name: (table, PostgreSQL EXCLUDE elements and WHERE, SQLite condition on another row ``o`` and the new row)
_EXCLUSIONS = {
    'ex_unit_versions_code': ('unit_versions', f"code WITH =, {_PERIOD}", "", "o.code = NEW.code"),
    'ex_unit_versions_unit': ('unit_versions', f"unit_id WITH =, {_PERIOD}", "", "o.unit_id = NEW.unit_id"),
    'ex_unit_versions_lead': ('unit_versions', _PERIOD, " WHERE (is_lead)", "o.is_lead AND NEW.is_lead"),
    'ex_unit_parents_unit': ('unit_parents', f"unit_id WITH =, {_PERIOD}", "", "o.unit_id = NEW.unit_id"),
}


def _sqlite_triggers(name: str, table: str, condition: str) -> list[str]:
    overlap = (
        f"o.valid_from < COALESCE(NEW.valid_to, {_END}) AND NEW.valid_from < COALESCE(o.valid_to, {_END})"
    )
    return [
        f"CREATE TRIGGER {name}_{when.split()[0].lower()} BEFORE {when} ON {table} "
        f"WHEN EXISTS (SELECT 1 FROM {table} o WHERE {condition} AND {overlap}{same}) "
        f"BEGIN SELECT RAISE(ABORT, '{name}'); END"
        for when, same in (("INSERT", ""), ("UPDATE", " AND o.id <> OLD.id"))
    ]


def upgrade() -> None:
    op.create_table('unit_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('is_lead', sa.Boolean(), nullable=False),
    sa.CheckConstraint('valid_to IS NULL OR valid_to > valid_from', name=op.f('ck_unit_versions_period')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_unit_versions_unit_id_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unit_versions'))
    )
    with op.batch_alter_table('unit_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unit_versions_code'), ['code'], unique=False)
        batch_op.create_index('ix_unit_versions_unit_id_valid_from', ['unit_id', 'valid_from'], unique=False)

    op.create_table('unit_successions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('predecessor_id', sa.Integer(), nullable=False),
    sa.Column('successor_id', sa.Integer(), nullable=False),
    sa.Column('effective', sa.Date(), nullable=False),
    sa.CheckConstraint('predecessor_id <> successor_id', name=op.f('ck_unit_successions_distinct_units')),
    sa.ForeignKeyConstraint(['predecessor_id'], ['units.id'], name=op.f('fk_unit_successions_predecessor_id_units')),
    sa.ForeignKeyConstraint(['successor_id'], ['units.id'], name=op.f('fk_unit_successions_successor_id_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unit_successions')),
    sa.UniqueConstraint('predecessor_id', 'successor_id', name=op.f('uq_unit_successions_predecessor_id_successor_id'))
    )
    with op.batch_alter_table('unit_successions', schema=None) as batch_op:
        batch_op.create_index('ix_unit_successions_successor_id', ['successor_id'], unique=False)

    op.execute(
        "INSERT INTO unit_versions (unit_id, valid_from, valid_to, code, name, kind, is_lead) "
        "SELECT id, valid_from, valid_to, code, name, kind, is_lead FROM units ORDER BY id"
    )
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.drop_index('ix_units_code', table_name='units')
    for column in ('code', 'name', 'kind', 'is_lead'):
        # SQLite drops a plain column in place (3.35+); a batch copy of ``units`` would have to drop
        # the table every other table points at.
        op.execute(f"ALTER TABLE units DROP COLUMN {column}") if sqlite else op.drop_column('units', column)

    if sqlite:
        for name, (table, _, _, condition) in _EXCLUSIONS.items():
            for statement in _sqlite_triggers(name, table, condition):
                op.execute(statement)
    else:
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        for name, (table, elements, where, _) in _EXCLUSIONS.items():
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} EXCLUDE USING gist ({elements}){where}")
        op.create_check_constraint(op.f('ck_unit_parents_period'), 'unit_parents', 'valid_to IS NULL OR valid_to > valid_from')
    if sqlite:
        # SQLite cannot add a CHECK to an existing table; a trigger refuses the same rows.
        for when in ("INSERT", "UPDATE"):
            op.execute(
                f"CREATE TRIGGER ck_unit_parents_period_{when.lower()} BEFORE {when} ON unit_parents "
                "WHEN NEW.valid_to IS NOT NULL AND NEW.valid_to <= NEW.valid_from "
                "BEGIN SELECT RAISE(ABORT, 'ck_unit_parents_period'); END"
            )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        for name in [*_EXCLUSIONS, 'ck_unit_parents_period']:
            for when in ('insert', 'update'):
                op.execute(f"DROP TRIGGER IF EXISTS {name}_{when}")
    else:
        for name, (table, _, _, _) in _EXCLUSIONS.items():
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        op.drop_constraint(op.f('ck_unit_parents_period'), 'unit_parents', type_='check')
    # Each unit takes back the attributes of its last version.
    for column, kind, default in (
        ('code', 'VARCHAR(32)', "''"), ('name', 'VARCHAR(255)', "''"), ('kind', 'VARCHAR(32)', "'other'"),
        ('is_lead', 'BOOLEAN', 'false' if not sqlite else '0'),
    ):
        op.execute(f"ALTER TABLE units ADD COLUMN {column} {kind} NOT NULL DEFAULT {default}")
        op.execute(
            f"UPDATE units SET {column} = (SELECT v.{column} FROM unit_versions v WHERE v.unit_id = units.id "
            "ORDER BY v.valid_from DESC LIMIT 1) WHERE EXISTS (SELECT 1 FROM unit_versions v WHERE v.unit_id = units.id)"
        )
        if not sqlite:
            op.alter_column('units', column, server_default=None)
    op.create_index('ix_units_code', 'units', ['code'], unique=False)
    with op.batch_alter_table('unit_successions', schema=None) as batch_op:
        batch_op.drop_index('ix_unit_successions_successor_id')
    op.drop_table('unit_successions')
    with op.batch_alter_table('unit_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_unit_versions_unit_id_valid_from')
        batch_op.drop_index(batch_op.f('ix_unit_versions_code'))
    op.drop_table('unit_versions')
