"""Small Alembic projects written into a test's tmp_path, shaped like real third-party histories.

The revision files live in `migrations/revisions/` (a version location not called `versions`), a helper module of
the project sits beside alembic.ini, and env.py is the cookbook's "sharing a connection" recipe over the stock
generic one. Each case gives its own revisions (and, if it needs them, its own target_metadata and env.py lines).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

INI = """\
[alembic]
script_location = %(here)s/migrations
version_locations = %(here)s/migrations/revisions
prepend_sys_path = %(here)s
path_separator = os
sqlalchemy.url = sqlite:///%(here)s/not-this-one.db
"""

ENV_PY = """\
from alembic import context
from sqlalchemy import MetaData, engine_from_config, pool

config = context.config
{metadata}


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True{offline})
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection):
    context.configure(connection=connection, target_metadata=target_metadata{configure})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:
        run_online(connection)
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {{}}), prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_online(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

# Models that are not models: a MetaData kept only for its naming convention.
EMPTY_METADATA = 'target_metadata = MetaData(naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"})'


HEADER = '"""revision %s"""\nimport sqlalchemy as sa\nfrom alembic import op\n%s\nrevision = %r\ndown_revision = %r\n'


def revision(rev: str, down: str | tuple[str, ...] | None, upgrade: str = "pass", downgrade: str = "pass", head: str = "") -> str:
    """A revision file's source: its header, then upgrade() and downgrade() with the given bodies."""
    return HEADER % (rev, head, rev, down) + "\n\ndef upgrade():\n%s\n\n\ndef downgrade():\n%s\n" % (_body(upgrade), _body(downgrade))


def _body(source: str) -> str:
    return textwrap.indent(textwrap.dedent(source).strip(), "    ")


def write_project(
    root: Path,
    revisions: dict[str, str],
    metadata: str = "target_metadata = None",
    configure: str = "",
    offline: str = "",
    files: dict[str, str] | None = None,
) -> Path:
    """The project under root: alembic.ini, migrations/env.py, migrations/revisions/<name>.py; returns alembic.ini."""
    folder = root / "migrations" / "revisions"
    folder.mkdir(parents=True)
    (root / "alembic.ini").write_text(INI)
    (root / "migrations" / "env.py").write_text(ENV_PY.format(metadata=metadata, configure=configure, offline=offline))
    for name, source in revisions.items():
        (folder / ("%s.py" % name)).write_text(source)
    for name, source in (files or {}).items():
        (root / name).write_text(textwrap.dedent(source))
    return root / "alembic.ini"


CREATE_ACCOUNT = """
op.create_table("account", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
"""
DROP_ACCOUNT = 'op.drop_table("account")'

# A data migration as real projects write them: read rows through op.get_bind(), then write. Offline, the bind
# is a mock whose execute() returns None (and that has no scalar()).
DATA_FIX_UP = """
bind = op.get_bind()
for row in bind.execute(sa.text("select id, name from account")).fetchall():
    bind.execute(sa.text("update account set name = :name where id = :id"), {"name": row.name.strip(), "id": row.id})
"""
DATA_FIX_DOWN = """
if op.get_bind().scalar(sa.text("select count(*) from account where name is null")):
    raise RuntimeError("rows without a name")
"""


def data_migration_chain() -> dict[str, str]:
    """aa01 creates a table, bb02 fixes data through op.get_bind(), cc03 adds a column and an index."""
    return {
        "aa01_account": revision("aa01", None, CREATE_ACCOUNT, DROP_ACCOUNT),
        "bb02_fix_names": revision("bb02", "aa01", DATA_FIX_UP, DATA_FIX_DOWN),
        "cc03_email": revision(
            "cc03",
            "bb02",
            'op.add_column("account", sa.Column("email", sa.String(80)))\nop.create_index("ix_account_email", "account", ["email"])',
            'op.drop_index("ix_account_email", table_name="account")\nop.drop_column("account", "email")',
        ),
    }


def branch_and_merge() -> dict[str, str]:
    """aa01 -> bb02, then two branches from bb02 (cc03 and dd04) merged again by ee05 (`pass` bodies, two down revisions)."""
    return {
        "aa01_account": revision("aa01", None, CREATE_ACCOUNT, DROP_ACCOUNT),
        "bb02_fix_names": revision("bb02", "aa01", DATA_FIX_UP, DATA_FIX_DOWN),
        "cc03_email": revision("cc03", "bb02", 'op.add_column("account", sa.Column("email", sa.String(80)))', 'op.drop_column("account", "email")'),
        "dd04_audit": revision("dd04", "bb02", 'op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("audit")'),
        "ee05_merge": revision("ee05", ("cc03", "dd04")),
    }
