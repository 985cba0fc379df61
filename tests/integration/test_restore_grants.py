"""db_restore on real PostgreSQL 15 gives back a database the application can use exactly as before: the dump's
owners and privileges, and the original database's own owner, GRANT ... ON DATABASE, ALTER DATABASE / ALTER ROLE
... IN DATABASE settings, comment and connection limit; what the migration user may not give back is refused before
anything is touched."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from ansible.module_utils.fleet.backup.restore import dump_owners, entry_owner, guc_list, restore_passes
from support.pgcluster import PgCluster

from .test_bad_input import EQUITIES_INI, conn_args, fails_with
from .test_restore import MID, back_up, call, pg_ledger, pg_state, restore_args, seed_pg, side_databases

pytestmark = pytest.mark.slow

APP = "app_rw"  # the application: reads and writes, owns nothing
OWNER = "app_owner"  # owns the database; the migration user is a member
REPORTER = "app_reporter"  # owns a table in schema public, where it may create; the migration user is a member
OUTSIDER = "app_outsider"  # a role the migration user is not a member of
ROLES = (APP, OWNER, REPORTER, OUTSIDER)
SEARCH_PATH = 'public, "$user", "odd, name"'  # a list setting, one element with a comma in it
COMMENT = "equities: 100% of the app's prices"


def create_role(cluster: PgCluster, role: str, password: str | None = None) -> None:
    """A role; with a password, one that may log in (the server only ever sees a SCRAM verifier)."""
    cluster.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    if password is None:
        cluster.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        return
    conn = cluster.connect()
    try:
        verifier = psycopg2.extensions.encrypt_password(password, role, conn, "scram-sha-256")
    finally:
        conn.close()
    cluster.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))


@pytest.fixture()
def roles(fresh_pg: list[PgCluster]) -> Iterator[str]:
    """The roles (cluster-wide, so made here and dropped after the test); yields app_rw's password."""
    db1 = fresh_pg[0]
    password = secrets.token_urlsafe(12)
    for role in ROLES:
        create_role(db1, role, password if role == APP else None)
    try:
        yield password
    finally:
        db1.reset_database("equities")  # the only database with their objects and grants
        for role in ROLES:
            db1.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def as_superuser(cluster: PgCluster, *statements: str) -> None:
    for statement in statements:
        cluster.execute(statement, dbname="equities")


def access(cluster: PgCluster, dbname: str = "equities") -> dict[str, Any]:
    """Everything that decides what a role may do in the database: owners, privileges (with grantors), the
    database's own grants, settings, comment, connection limit and locale."""

    def acl(column: str, kind: str, owner: str) -> str:
        return (
            "array(select row(coalesce(r.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable, pg_get_userbyid(a.grantor))::text"
            " from aclexplode(coalesce(%s, acldefault(%s, %s))) a left join pg_roles r on r.oid = a.grantee order by 1)" % (column, kind, owner)
        )

    database = cluster.execute(
        "select pg_get_userbyid(datdba), datconnlimit, shobj_description(oid, 'pg_database'), pg_encoding_to_char(encoding), datcollate,"
        " datlocprovider, %s from pg_database d where datname = %%s" % acl("datacl", "'d'", "datdba"),
        (dbname,),
    )
    settings = cluster.execute(
        "select coalesce(r.rolname, ''), array(select unnest(s.setconfig) order by 1) from pg_db_role_setting s"
        " join pg_database d on d.oid = s.setdatabase left join pg_roles r on r.oid = s.setrole where d.datname = %s order by 1",
        (dbname,),
    )
    relations = cluster.execute(
        "select c.relname, c.relkind, pg_get_userbyid(c.relowner), %s from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'S', 'v') order by 1"
        % acl("c.relacl", "case when c.relkind = 'S' then 's' else 'r' end::\"char\"", "c.relowner"),
        dbname=dbname,
    )
    schema = cluster.execute(
        "select pg_get_userbyid(nspowner), %s from pg_namespace where nspname = 'public'" % acl("nspacl", "'n'", "nspowner"), dbname=dbname
    )
    defaults = cluster.execute("select pg_get_userbyid(defaclrole), defaclobjtype, defaclacl::text from pg_default_acl order by 1, 2", dbname=dbname)
    return {"database": database, "settings": settings, "relations": relations, "schema": schema, "default_privileges": defaults}


def app_session(cluster: PgCluster, password: str, ticker: str) -> dict[str, Any]:
    """What the application sees and does: its settings, reads, and writes to a table of the migrations and to one
    of another owner (each with its sequence), and a temporary table."""
    conn = psycopg2.connect(host=cluster.host, port=cluster.port, dbname="equities", user=APP, password=password, connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            seen: dict[str, Any] = {}
            for name in ("search_path", "statement_timeout", "work_mem"):
                cur.execute("select current_setting(%s)", (name,))
                seen[name] = cur.fetchone()[0]
            cur.execute("insert into companies (ticker, company_name) values (%s, 'Written by the app') returning id", (ticker,))
            seen["inserted"] = cur.fetchone()[0] is not None
            cur.execute("update companies set sector = 'apps' where ticker = %s", (ticker,))
            cur.execute("delete from companies where ticker = 'GLOBX'")
            cur.execute("insert into companies (ticker, company_name) values ('GLOBX', 'Globex')")
            cur.execute("insert into reports (body) values (%s)", (ticker,))
            cur.execute("create temporary table scratchpad (x int)")
            cur.execute("select ticker from companies order by ticker")
            seen["tickers"] = [row[0] for row in cur.fetchall()]
            cur.execute("select body from reports order by id")
            seen["reports"] = [row[0] for row in cur.fetchall()]
            return seen
    finally:
        conn.close()


def test_the_application_role_works_exactly_as_before_after_a_restore(fresh_pg: list[PgCluster], roles: str, tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    migrator = db1.app_user
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), "target": "+3", **conn_args(db1)})
    assert run.rc == 0 and result["after"] == [MID], result
    seed_pg(db1)
    # The provisioning of an application as a DBA does it: a database owned by a role the migration user is a member
    # of, a table of that role, privileges granted by hand and by default, the database closed to PUBLIC.
    as_superuser(
        db1,
        "GRANT %s, %s TO %s" % (OWNER, REPORTER, migrator),
        "GRANT %s TO %s" % (APP, migrator),  # so that it may copy app_rw's own settings in this database
        "ALTER DATABASE equities OWNER TO %s" % OWNER,
        "GRANT CREATE ON SCHEMA public TO %s" % REPORTER,
        "SET ROLE %s; CREATE TABLE reports (id serial PRIMARY KEY, body text NOT NULL); RESET ROLE" % REPORTER,
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %s" % APP,
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %s" % APP,
        "ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT SELECT ON TABLES TO %s" % (migrator, APP),
        "REVOKE ALL ON DATABASE equities FROM PUBLIC",
        "GRANT CONNECT, TEMPORARY ON DATABASE equities TO %s" % APP,
        "GRANT CONNECT ON DATABASE equities TO %s WITH GRANT OPTION" % migrator,
        "ALTER DATABASE equities SET search_path = %s" % SEARCH_PATH,
        "ALTER DATABASE equities SET statement_timeout = '7s'",
        "ALTER ROLE %s IN DATABASE equities SET work_mem = '5MB'" % APP,
        "ALTER DATABASE equities CONNECTION LIMIT 40",
        "COMMENT ON DATABASE equities IS '%s'" % COMMENT.replace("'", "''"),
    )
    before = access(db1)
    seen_before = app_session(db1, roles, "APP1")
    assert seen_before["search_path"] == SEARCH_PATH and seen_before["statement_timeout"] == "7s" and seen_before["work_mem"] == "5MB"

    backup = back_up(fresh_pg, tmp_path / "backups")
    app_session(db1, roles, "LATE")  # written after the backup: the restore takes it away

    run, result = call(fresh_pg, "db_restore", restore_args(db1, backup["path"]))
    assert run.rc == 0, result.get("msg")
    assert side_databases(db1) == []
    assert access(db1) == before
    assert result["database_properties"] == {"owner": OWNER, "grant_statements": 5, "settings": 3, "comment": True}, result
    seen_after = app_session(db1, roles, "APP2")
    assert {k: seen_after[k] for k in ("search_path", "statement_timeout", "work_mem")} == {
        k: seen_before[k] for k in ("search_path", "statement_timeout", "work_mem")
    }
    assert "LATE" not in seen_after["tickers"] and {"APP1", "APP2", "GLOBX"} <= set(seen_after["tickers"])
    assert seen_after["reports"] == ["APP1", "APP2"]
    # PUBLIC still may not connect, as before
    create_role(db1, "app_nobody", roles)
    try:
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(host=db1.host, port=db1.port, dbname="equities", user="app_nobody", password=roles, connect_timeout=10).close()
    finally:
        db1.execute("DROP ROLE app_nobody")


def test_what_the_user_may_not_give_back_is_refused_before_anything_is_touched(fresh_pg: list[PgCluster], roles: str, tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    migrator = db1.app_user
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), "target": "+3", **conn_args(db1)})
    assert run.rc == 0 and result["after"] == [MID], result
    seed_pg(db1)
    as_superuser(
        db1,
        "CREATE TABLE audit_log (id int)",
        "ALTER TABLE audit_log OWNER TO %s" % OUTSIDER,
        "GRANT SELECT ON audit_log TO %s" % migrator,  # so that the backup can read it
    )
    backup = back_up(fresh_pg, tmp_path / "backups")
    path = backup["path"]
    before = (pg_state(db1), access(db1))

    run, result = call(fresh_pg, "db_restore", restore_args(db1, path), "--check")
    fails_with(result, run.rc, "objects owned by %s (TABLE public audit_log" % OUTSIDER, "GRANT %s TO %s" % (OUTSIDER, migrator), "nothing was touched")
    run, result = call(fresh_pg, "db_restore", restore_args(db1, path))
    fails_with(result, run.rc, "objects owned by %s (TABLE public audit_log" % OUTSIDER, "GRANT %s TO %s" % (OUTSIDER, migrator), "nothing was touched")
    assert "ledger_entry_id" not in result, result
    assert (pg_state(db1), access(db1)) == before and side_databases(db1) == []

    # the database's owner and a role's own settings the user may not give the copy, and a superuser-only setting
    as_superuser(
        db1,
        "ALTER DATABASE equities OWNER TO %s" % OUTSIDER,
        "ALTER ROLE %s IN DATABASE equities SET work_mem = '3MB'" % APP,
        "ALTER DATABASE equities SET log_min_duration_statement = '5s'",
    )
    before = (pg_state(db1), access(db1))
    run, result = call(fresh_pg, "db_restore", restore_args(db1, path))
    message = fails_with(
        result,
        run.rc,
        "the database's owner %s" % OUTSIDER,
        "the settings of ALTER ROLE %s IN DATABASE" % APP,
        "the superuser-only setting log_min_duration_statement",
        "GRANT %s TO %s" % (APP, migrator),
        "GRANT SET ON PARAMETER log_min_duration_statement TO %s" % migrator,
        "or restore as a superuser",
        "nothing was touched",
    )
    assert message.count("GRANT %s TO %s" % (OUTSIDER, migrator)) == 1, message
    assert "ledger_entry_id" not in result, result
    assert (pg_state(db1), access(db1)) == before and side_databases(db1) == []
    assert "restore" not in [row["action"] for row in pg_ledger(db1)]


# -- the pieces that need no server ------------------------------------------------------------------------------
def test_list_settings_come_back_element_by_element() -> None:
    assert guc_list('public, "$user", "odd, name"') == ["public", "$user", "odd, name"]
    assert guc_list('"say ""hi""", b') == ['say "hi"', "b"]
    assert guc_list('""') == [""]


def test_owners_are_read_from_the_table_of_contents_also_with_spaces_in_role_names() -> None:
    entries = [
        "217; 1259 16397 TABLE public t2 owner2",
        "218; 1259 16400 TABLE public my table app owner",
        "3403; 0 16400 TABLE DATA public my table app owner",
        "2; 3079 16403 EXTENSION - pg_trgm ",
        "3412; 0 0 ACL - SCHEMA public pg_database_owner",
    ]
    assert entry_owner("2; 3079 16403 EXTENSION - pg_trgm ", []) is None
    assert dump_owners(entries, ["app owner"]) == {
        "owner2": ["TABLE public t2"],
        "app owner": ["TABLE public my table"],
        "pg_database_owner": ["ACL - SCHEMA public"],
    }


def test_schemas_and_their_privileges_are_restored_first_only_when_there_are_such_privileges() -> None:
    schema = "10; 2615 16390 SCHEMA - reporting app_reporter"
    table = "20; 1259 16391 TABLE reporting daily app_reporter"
    acls = ["30; 0 0 ACL - SCHEMA public pg_database_owner", "31; 0 0 ACL - SCHEMA reporting app_reporter", "32; 0 0 ACL reporting TABLE daily app_reporter"]
    assert restore_passes([schema, table, acls[2]]) == [[schema, table, acls[2]]]
    assert restore_passes([schema, table, *acls]) == [[schema, acls[0], acls[1]], [table, acls[2]]]


def test_the_restored_database_keeps_its_icu_locale(fresh_pg: list[PgCluster], tmp_path: Path) -> None:
    db1 = fresh_pg[0]
    db1.drop_database("equities")
    db1.execute(sql.SQL("CREATE DATABASE equities OWNER {} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'").format(sql.Identifier(db1.app_user)))
    run, result = call(fresh_pg, "alembic_upgrade", {"config": str(EQUITIES_INI), "target": "+3", **conn_args(db1)})
    assert run.rc == 0, result
    backup = back_up(fresh_pg, tmp_path / "backups")
    locale = "select datlocprovider, daticulocale, datcollate from pg_database where datname = 'equities'"
    before = db1.execute(locale)
    run, result = call(fresh_pg, "db_restore", restore_args(db1, backup["path"]))
    assert run.rc == 0, result.get("msg")
    assert db1.execute(locale) == before == [("i", "de-DE", "C")]
