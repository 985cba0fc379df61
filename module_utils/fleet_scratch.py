# -*- coding: utf-8 -*-
# The schema a database *should* have at a revision, built for real: the
# project's migrations run into a scratch database (PostgreSQL: a temporary
# database on the same server; SQLite: a temporary file), which is reflected
# and compared with the live database, then dropped. This is how a database
# below head (after a rollback, before a stamp) is verified; the models only
# describe head.
from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace

from ansible.module_utils.fleet_alembic import AlembicRun, describe_diff, diff_table
from ansible.module_utils.fleet_common import DbTarget, FleetError
from ansible.module_utils.fleet_db import connect, create_engine

try:
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
except ImportError:  # pragma: no cover - reported by the module
    pass


def scratch_prefix(dbname: str) -> str:
    """The name of a scratch database of dbname, but its 6 hex digits."""
    return ("%s_scratch_" % dbname[:40]).lower()


@contextlib.contextmanager
def scratch_target(target: DbTarget, maintenance_db: str = "postgres") -> Iterator[DbTarget]:
    """An empty database like the target, removed afterwards."""
    suffix = secrets.token_hex(3)
    if target.dialect == "sqlite":
        directory = tempfile.mkdtemp(prefix="fleet-scratch-")
        path = os.path.join(directory, "scratch.db")
        try:
            yield replace(target, url="sqlite:///%s" % path, dbname=path)
        finally:
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)
        return
    name = scratch_prefix(target.dbname) + suffix
    scratch = replace(target, url=target.url.rsplit("/", 1)[0] + "/" + name, dbname=name)
    admin = create_engine(target, dbname=maintenance_db).execution_options(isolation_level="AUTOCOMMIT")
    quoted = admin.dialect.identifier_preparer.quote_identifier(name)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE %s" % quoted)
    except sa.exc.DBAPIError as exc:
        admin.dispose()
        raise FleetError(
            "cannot create a scratch database to build the expected schema (%s): grant the user CREATEDB, or verify without compare_schema."
            % " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        ) from None
    try:
        yield scratch
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % quoted)
        admin.dispose()


def expected_schema_differences(run: AlembicRun, revision: str, ignore_tables: Sequence[str], maintenance_db: str = "postgres") -> list[str]:
    """Differences between the live schema and the schema the migrations build at `revision`."""
    with scratch_target(run.target, maintenance_db) as scratch_db:
        scratch = AlembicRun(run.project, scratch_db)
        scratch._script = run.script  # same project: reuse the loaded scripts
        scratch.output = run.output
        scratch.migrate("upgrade", run.parse(revision, "upgrade"))
        expected = sa.MetaData()
        engine = scratch.engine
        try:
            with engine.connect() as conn:
                expected.reflect(conn)
        finally:
            engine.dispose()
    skip = set(ignore_tables) | {"alembic_version"}
    for table in list(expected.tables.values()):
        if table.name in skip:
            expected.remove(table)
    conn = connect(run.engine, run.target)
    try:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, expected)
    finally:
        conn.close()
    return [describe_diff(diff, "expected schema") for diff in diffs if diff_table(diff) not in skip]
