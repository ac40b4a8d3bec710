"""History key ids: each row names the key that signed it and its canonical form; keys get check values.

Rows written before this revision were signed in canonical form 1 with the one history key there
was; they get ``key_id = '1'`` and ``form = 1``, which is what a single ``history_key`` setting is
called (``[history] key_id`` defaults to "1"). ``history_keys`` holds, per key id, an HMAC of a
fixed label under the key (qmsflow/engine/keys.py), when it was first used and when it was retired.

A trigger refuses a history row signed by a key at or after its recorded retirement, so a process
that still holds a retired key (started before ``qmsflow audit rotate-key``) cannot extend a chain
with it; the engine refuses the same before it writes (history.append).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_RETIRED = (
    "EXISTS (SELECT 1 FROM history_keys k WHERE k.key_id = NEW.key_id"
    " AND k.retired_at IS NOT NULL AND NEW.at >= k.retired_at)"
)


def upgrade() -> None:
    op.create_table('history_keys',
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('check_value', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('retired_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_history_keys'))
    )
    with op.batch_alter_table('history', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_id', sa.String(length=32), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('form', sa.Integer(), server_default='1', nullable=False))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            "CREATE FUNCTION history_key_not_retired() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF {_RETIRED} THEN RAISE EXCEPTION 'history key % is retired and cannot sign a new row', NEW.key_id "
            "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$"
        )
        op.execute(
            "CREATE TRIGGER history_key_not_retired BEFORE INSERT ON history "
            "FOR EACH ROW EXECUTE FUNCTION history_key_not_retired()"
        )
    else:
        op.execute(
            f"CREATE TRIGGER history_key_not_retired BEFORE INSERT ON history WHEN {_RETIRED} "
            "BEGIN SELECT RAISE(ABORT, 'history key is retired and cannot sign a new row'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER history_key_not_retired ON history")
        op.execute("DROP FUNCTION history_key_not_retired()")
    else:
        op.execute("DROP TRIGGER history_key_not_retired")
    with op.batch_alter_table('history', schema=None) as batch_op:
        batch_op.drop_column('form')
        batch_op.drop_column('key_id')
    op.drop_table('history_keys')
