# -*- coding: utf-8 -*-
# The schema a database *should* have at a revision, built for real: the
# project's migrations run into a scratch database (PostgreSQL: a temporary
# database on the same server; SQLite: a temporary file), which is compared
# with the live database, then dropped. This is how a database below head
# (after a rollback, before a stamp) is verified; the models only describe
# head. PostgreSQL's whole catalog is compared (schema.snapshot), so a leftover
# enum type, CHECK, default, view, function or trigger is named too.
from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from ansible.module_utils.common.warnings import warn

from ansible.module_utils.fleet.alembic.run import AlembicRun, describe_diff, diff_table
from ansible.module_utils.fleet.core.common import DbTarget, FleetError, environment
from ansible.module_utils.fleet.core.db import connect, create_engine, drop_database, error_detail
from ansible.module_utils.fleet.schema.snapshot import Inventory, compare_inventories, read_inventory, read_sqlite_objects, reconcile_printing, rename_database

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
        try:
            with admin.connect() as conn:
                drop_database(conn, name)
        except sa.exc.DBAPIError as exc:
            # The comparison stands; a scratch database left behind is named, never the reason to fail.
            warn("the scratch database %s could not be dropped (%s): drop it by hand." % (name, error_detail(exc, target)[:200]))
        finally:
            admin.dispose()


def expected_schema_differences(run: AlembicRun, revision: str | Sequence[str], ignore_tables: Sequence[str], maintenance_db: str = "postgres") -> list[str]:
    """Differences between the live schema and the schema the migrations build at `revision`.

    `revision` may be several revisions (a database at the heads of several branches): the scratch database is
    upgraded to each in turn, which leaves it at all of them. On PostgreSQL every object of the catalog is compared
    (schema.snapshot); on SQLite what compare_metadata reflects, and the views and triggers.
    """
    revisions = [revision] if isinstance(revision, str) else list(revision)
    skip = [*ignore_tables, "alembic_version"]
    if run.target.dialect == "postgresql":
        return _catalog_differences(run, revisions, skip, maintenance_db)
    return _metadata_differences(run, revisions, skip, maintenance_db)


def _build(run: AlembicRun, scratch_db: DbTarget, revisions: Sequence[str]) -> AlembicRun:
    """The project's migrations run into the scratch database, up to each revision in turn."""
    scratch = AlembicRun(run.project, scratch_db)
    scratch._script = run.script  # same project: reuse the loaded scripts
    scratch.output = run.output
    # An env.py that connects to $DATABASE_URL itself must reach the scratch database, never the live one.
    with environment({"DATABASE_URL": scratch_db.url}):
        for revision in revisions:
            scratch.migrate("upgrade", run.parse(revision, "upgrade"))
    return scratch


def _catalog_differences(run: AlembicRun, revisions: Sequence[str], skip: Sequence[str], maintenance_db: str) -> list[str]:
    live = _inventory(run.engine, run.target)
    with scratch_target(run.target, maintenance_db) as scratch_db:
        engine = _build(run, scratch_db, revisions).engine
        try:
            conn = connect(engine, scratch_db)
            try:
                # The scratch database's own name (random) may appear in a definition: the live one's stands for it.
                expected = rename_database(read_inventory(conn), scratch_db.dbname, run.target.dbname)
                live = reconcile_printing(conn, live, expected)
            finally:
                conn.close()
        finally:
            engine.dispose()
    return compare_inventories(live, expected, "expected schema", skip)


def _inventory(engine: Any, target: DbTarget) -> Inventory:
    conn = connect(engine, target)
    try:
        return read_inventory(conn)
    finally:
        conn.close()


def _metadata_differences(run: AlembicRun, revisions: Sequence[str], skip: Sequence[str], maintenance_db: str) -> list[str]:
    with scratch_target(run.target, maintenance_db) as scratch_db:
        engine = _build(run, scratch_db, revisions).engine
        expected = sa.MetaData()
        try:
            with engine.connect() as conn:
                expected.reflect(conn)
                expected_objects = read_sqlite_objects(conn)
        finally:
            engine.dispose()
    for table in list(expected.tables.values()):
        if table.name in skip:
            expected.remove(table)
    conn = connect(run.engine, run.target)
    try:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, expected)
        live_objects = read_sqlite_objects(conn)
    finally:
        conn.close()
    found = [describe_diff(diff, "expected schema") for diff in diffs if diff_table(diff) not in skip]
    return found + compare_inventories(live_objects, expected_objects, "expected schema", skip)
