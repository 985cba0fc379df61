"""Unit tests of module_utils/fleet/core/common.py: URL parsing, the connection
description every client gets, scrubbing, the in-memory PGPASSFILE and its
sweep, and the environment override helper."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ansible.module_utils.fleet.core.common import (
    DbTarget,
    FleetError,
    conninfo,
    environment,
    libpq_params,
    parse_target,
    private_passfile,
    scrub,
    sweep_stale_passfiles,
    url_secrets,
)

SECRET = "s3cr3t-Pa55w0rd"


def refusal(url: str | None, password: str | None = None) -> str:
    """The one-line FleetError message parse_target gives for a URL."""
    with pytest.raises(FleetError) as caught:
        parse_target(url, password)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message, message
    return message


# -- parse_target: PostgreSQL --------------------------------------------------
@pytest.mark.parametrize(
    "url, expected_url, host, port, user, dbname, driver",
    [
        (
            "postgresql://deploy@db1.example.com:5433/equities",
            "postgresql+psycopg2://deploy@db1.example.com:5433/equities",
            "db1.example.com",
            5433,
            "deploy",
            "equities",
            "psycopg2",
        ),
        (
            "postgresql://deploy@db1.example.com/equities",
            "postgresql+psycopg2://deploy@db1.example.com/equities",
            "db1.example.com",
            5432,
            "deploy",
            "equities",
            "psycopg2",
        ),
        (
            "postgresql://db1:6000/algorithms",
            "postgresql+psycopg2://db1:6000/algorithms",
            "db1",
            6000,
            None,
            "algorithms",
            "psycopg2",
        ),
        (
            "postgresql:///equities",
            "postgresql+psycopg2:///equities",
            None,
            5432,
            None,
            "equities",
            "psycopg2",
        ),
        (
            "postgresql+psycopg2://deploy@db1/equities",
            "postgresql+psycopg2://deploy@db1/equities",
            "db1",
            5432,
            "deploy",
            "equities",
            "psycopg2",
        ),
        (
            "postgresql+pg8000://deploy@db1/equities",
            "postgresql+pg8000://deploy@db1/equities",
            "db1",
            5432,
            "deploy",
            "equities",
            "pg8000",
        ),
        (
            "postgres://deploy@db1:5432/equities",
            "postgresql+psycopg2://deploy@db1:5432/equities",
            "db1",
            5432,
            "deploy",
            "equities",
            "psycopg2",
        ),
        (
            "POSTGRESQL://deploy@db1/equities",
            "postgresql+psycopg2://deploy@db1/equities",
            "db1",
            5432,
            "deploy",
            "equities",
            "psycopg2",
        ),
        (
            "  postgresql://deploy@db1/equities\n",
            "postgresql+psycopg2://deploy@db1/equities",
            "db1",
            5432,
            "deploy",
            "equities",
            "psycopg2",
        ),
        (
            "postgresql://app%40corp@db1/my%20db?sslmode=require",
            "postgresql+psycopg2://app%40corp@db1/my%20db?sslmode=require",
            "db1",
            5432,
            "app@corp",
            "my db",
            "psycopg2",
        ),
    ],
)
def test_postgresql_url_is_split_and_normalised(url: str, expected_url: str, host: str | None, port: int, user: str | None, dbname: str, driver: str) -> None:
    target = parse_target(url, None)
    assert target.url == expected_url
    assert target.dialect == "postgresql"
    assert target.driver == driver
    assert target.host == host
    assert target.port == port
    assert target.user == user
    assert target.dbname == dbname
    assert target.password is None


def test_normalised_postgresql_url_loads_the_psycopg2_dialect() -> None:
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the project ships psycopg2.
    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        dialect = sa.engine.make_url(parse_target(url, None).url).get_dialect()
        assert dialect.driver == "psycopg2"


def test_postgres_alias_with_driver_is_normalised() -> None:
    target = parse_target("postgres+psycopg2://deploy@db1/equities", None)
    assert target.url == "postgresql+psycopg2://deploy@db1/equities"
    sa.engine.make_url(target.url).get_dialect()


def test_password_is_kept_apart_from_the_url() -> None:
    target = parse_target("postgresql://deploy@db1/equities", SECRET, connect_timeout=3)
    assert target.password == SECRET
    assert target.connect_timeout == 3
    assert SECRET not in target.url
    assert SECRET not in target.label


def test_empty_password_means_no_password() -> None:
    assert parse_target("postgresql://deploy@db1/equities", "").password is None


@pytest.mark.parametrize(
    "url, label",
    [
        ("postgresql://deploy@db1.example.com:5433/equities", "deploy@db1.example.com:5433/equities"),
        ("postgresql://deploy@db1/equities", "deploy@db1:5432/equities"),
        ("postgresql:///equities", "@localhost:5432/equities"),
    ],
)
def test_postgresql_label(url: str, label: str) -> None:
    assert parse_target(url, SECRET).label == label


# -- parse_target: SQLite ------------------------------------------------------
def test_sqlite_relative_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = parse_target("sqlite:///var/equities.db", None)
    expected = str(tmp_path / "var" / "equities.db")
    assert target.dbname == expected
    assert os.path.isabs(target.dbname)
    assert target.url == "sqlite:///" + expected
    assert target.dialect == "sqlite"
    assert (target.host, target.port, target.user, target.password) == (None, None, None, None)
    assert target.label == "sqlite:" + expected


def test_sqlite_absolute_path_is_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "equities.db")
    target = parse_target("sqlite:///" + path, None)
    assert target.url == "sqlite:///" + path
    assert target.url.startswith("sqlite:////")
    assert target.dbname == path
    assert sa.engine.make_url(target.url).database == path


def test_sqlite_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_target("sqlite:///~/x.db", None).dbname == str(tmp_path / "x.db")


def test_sqlite_path_is_unquoted(tmp_path: Path) -> None:
    target = parse_target("sqlite:///%s/my%%20file.db" % tmp_path, None)
    assert target.dbname == str(tmp_path / "my file.db")


def test_sqlite_ignores_a_password(tmp_path: Path) -> None:
    assert parse_target("sqlite:///" + str(tmp_path / "x.db"), SECRET).password is None


# -- parse_target: refusals ----------------------------------------------------
@pytest.mark.parametrize("url", [None, "", "   "])
def test_empty_url_is_refused(url: str | None) -> None:
    message = refusal(url)
    assert "url is empty" in message
    assert "postgresql://user@host:5432/dbname" in message


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://", "sqlite:///", "sqlite:///?mode=ro"])
def test_sqlite_without_a_file_is_refused(url: str) -> None:
    message = refusal(url)
    assert "names no SQLite file" in message
    assert "sqlite:////absolute/path/to/file.db" in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://deploy:%s@db1/equities" % SECRET,
        "postgresql://deploy:%s@db1:5432/equities" % SECRET,
        "postgres://deploy:%s@db1/equities" % SECRET,
        "postgresql+psycopg2://deploy:%s@db1/equities" % SECRET,
        "postgresql://deploy:%s@db1:notaport/equities" % SECRET,
        "postgresql://deploy:%s@db1/" % SECRET,
        "sqlite://deploy:%s@/x.db" % SECRET,
    ],
)
def test_url_with_password_is_refused_without_echoing_it(url: str) -> None:
    message = refusal(url, SECRET)
    assert "url contains a password" in message
    assert "'password' option" in message
    assert SECRET not in message
    assert "deploy" not in message  # the URL is not echoed at all


def test_url_with_empty_password_is_refused() -> None:
    assert "contains a password" in refusal("postgresql://deploy:@db1/equities")


def test_url_with_password_in_the_query_is_refused() -> None:
    message = refusal("postgresql://deploy@db1/equities?password=%s" % SECRET)
    assert "contains a password" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "url, dialect",
    [
        ("mysql://deploy@db1/equities", "mysql"),
        ("mysql+pymysql://deploy@db1/equities", "mysql"),
        ("mysql://deploy:%s@db1/equities" % SECRET, "mysql"),
        ("oracle://deploy@db1/equities", "oracle"),
        ("mssql+pyodbc://deploy@db1/equities", "mssql"),
        ("db1/equities", "(none)"),
    ],
)
def test_unsupported_dialect_is_refused(url: str, dialect: str) -> None:
    message = refusal(url, SECRET)
    assert "unsupported dialect '%s'" % dialect in message
    assert "postgresql:// and sqlite:///" in message
    assert SECRET not in message


@pytest.mark.parametrize("url", ["postgresql://deploy@db1/", "postgresql://deploy@db1", "postgres://db1:5432"])
def test_postgresql_url_without_database_is_refused(url: str) -> None:
    message = refusal(url)
    assert "url names no database" in message


@pytest.mark.parametrize("url", ["postgresql://deploy@db1:notaport/equities", "postgresql://deploy@db1:99999/equities"])
def test_postgresql_url_with_invalid_port_is_refused(url: str) -> None:
    assert "url has an invalid port" in refusal(url)


def test_malformed_url_is_refused() -> None:
    assert "url is not a valid URL" in refusal("postgresql://deploy@[::1/equities")


# -- DbTarget ------------------------------------------------------------------
def test_label_never_contains_the_password_even_if_set_by_hand() -> None:
    target = DbTarget(
        url="postgresql+psycopg2://deploy@db1/equities",
        dialect="postgresql",
        driver="psycopg2",
        host=None,
        port=None,
        user="deploy",
        dbname="equities",
        password=SECRET,
    )
    assert target.label == "deploy@localhost:5432/equities"
    assert SECRET not in target.label


# -- scrub -----------------------------------------------------------------------
def test_scrub_replaces_every_occurrence_of_every_secret() -> None:
    text = "auth failed for %s (password %s), token abc123" % (SECRET, SECRET)
    scrubbed = scrub(text, SECRET, "abc123")
    assert SECRET not in scrubbed and "abc123" not in scrubbed
    assert scrubbed == "auth failed for ******** (password ********), token ********"


@pytest.mark.parametrize("secrets", [(), (None,), ("",), (None, "")])
def test_scrub_without_secrets_leaves_text_alone(secrets: tuple[str | None, ...]) -> None:
    assert scrub("nothing secret here", *secrets) == "nothing secret here"


# -- private_passfile ------------------------------------------------------------
@pytest.fixture()
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tempfile at an empty directory so leftovers can be seen."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("password", [None, ""])
def test_passfile_is_not_made_without_a_password(password: str | None, private_tmp: Path) -> None:
    with private_passfile(password) as path:
        assert path is None
        assert list(private_tmp.iterdir()) == []


def _disk_files(root: Path) -> list[Path]:
    return list(root.rglob("*"))


def test_passfile_lives_in_memory_only_and_is_private(private_tmp: Path) -> None:
    with private_passfile(SECRET) as path:
        assert path is not None
        assert path.startswith("/proc/%d/fd/" % os.getpid()), path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # libpq ignores a password file others may read
        assert Path(path).read_text() == "*:*:*:*:%s\n" % SECRET
        target = os.readlink(path)
        assert target.startswith("/memfd:") and target.endswith("(deleted)"), target  # no name in any file system
        assert _disk_files(private_tmp) == []
    assert not os.path.exists(path), "the descriptor is closed on exit"
    assert _disk_files(private_tmp) == []


def test_a_child_process_reads_the_passfile_by_its_path() -> None:
    """pg_dump and pg_restore are children: they open the path libpq is given, without any fd passing."""
    with private_passfile(SECRET) as path:
        assert path is not None
        done = subprocess.run([sys.executable, "-c", "import sys; print(open(sys.argv[1]).read(), end='')", path], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "*:*:*:*:%s\n" % SECRET


def test_a_killed_process_leaves_no_password_on_disk(private_tmp: Path) -> None:
    script = (
        "import importlib.util, sys, time\n"
        "spec = importlib.util.spec_from_file_location('fleet_common', sys.argv[2])\n"
        "common = sys.modules['fleet_common'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(common)\n"
        "with common.private_passfile(sys.argv[1]) as path:\n"
        "    print(path, flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    child = subprocess.Popen(
        [sys.executable, "-c", script, SECRET, str(sys.modules[parse_target.__module__].__file__)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        path = child.stdout.readline().strip()
        assert Path(path).read_text().endswith(":%s\n" % SECRET)
    finally:
        child.kill()
        child.wait()
    assert not os.path.exists(path)
    assert _disk_files(private_tmp) == [], "SIGKILL left a password file behind"


def test_without_memfd_the_passfile_is_a_private_file_named_after_the_process(private_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "memfd_create")
    with private_passfile(SECRET) as path:
        assert path is not None
        passfile = Path(path)
        assert passfile.parent.parent == private_tmp
        assert passfile.parent.name.startswith("fleet-pgpass-%d-" % os.getpid())
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
        assert stat.S_IMODE(passfile.parent.stat().st_mode) == 0o700
        assert passfile.read_text() == "*:*:*:*:%s\n" % SECRET
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize(
    "password, written",
    [
        ("pa:ss", "pa\\:ss"),
        ("back\\slash", "back\\\\slash"),
        ("a:b\\c:", "a\\:b\\\\c\\:"),
        ("\\:", "\\\\\\:"),
        ("*:*", "*\\:*"),
    ],
)
def test_passfile_escapes_colon_and_backslash(password: str, written: str, private_tmp: Path) -> None:
    with private_passfile(password) as path:
        assert path is not None
        assert Path(path).read_text() == "*:*:*:*:%s\n" % written


def test_passfile_is_closed_when_the_block_raises(private_tmp: Path) -> None:
    seen: list[str] = []
    with pytest.raises(RuntimeError, match="migration failed"):
        with private_passfile(SECRET) as path:
            assert path is not None
            seen.append(path)
            raise RuntimeError("migration failed")
    assert not os.path.exists(seen[0])
    assert list(private_tmp.iterdir()) == []


def test_nested_passfiles_are_distinct(private_tmp: Path) -> None:
    with private_passfile("one") as first, private_passfile("two") as second:
        assert first is not None and second is not None
        assert first != second
        assert Path(first).read_text().endswith(":one\n")
        assert Path(second).read_text().endswith(":two\n")
    assert list(private_tmp.iterdir()) == []


def test_passfile_refuses_a_line_break() -> None:
    with pytest.raises(FleetError, match="line break"):
        with private_passfile("a\nb"):
            pass


# -- sweep_stale_passfiles --------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leftover(root: Path, name: str, age: float = 0) -> Path:
    directory = root / name
    directory.mkdir(mode=0o700)
    (directory / "pgpass").write_text("*:*:*:*:%s\n" % SECRET)
    if age:
        then = time.time() - age
        os.utime(directory, (then, then))
    return directory


def test_sweep_removes_what_dead_processes_left_and_keeps_live_ones(tmp_path: Path) -> None:
    dead = _leftover(tmp_path, "fleet-pgpass-%d-abc123" % _dead_pid())
    live = _leftover(tmp_path, "fleet-pgpass-%d-def456" % os.getpid())
    old_legacy = _leftover(tmp_path, "fleet-pgpass-k2j3h4", age=2 * 3600)
    new_legacy = _leftover(tmp_path, "fleet-pgpass-q9w8e7")
    other = _leftover(tmp_path, "not-ours-%d" % _dead_pid())
    removed = sweep_stale_passfiles(str(tmp_path))
    assert sorted(removed) == sorted([str(dead), str(old_legacy)])
    assert not dead.exists() and not old_legacy.exists()
    assert live.exists() and new_legacy.exists() and other.exists()


def test_sweep_uses_the_temp_directory_and_survives_a_missing_one(private_tmp: Path) -> None:
    dead = _leftover(private_tmp, "fleet-pgpass-%d-abc123" % _dead_pid())
    assert sweep_stale_passfiles() == [str(dead)]
    assert sweep_stale_passfiles(str(private_tmp / "missing")) == []


# -- url_secrets (no_log values of a refused URL) -----------------------------------
@pytest.mark.parametrize(
    "url, secrets",
    [
        ("postgresql://deploy:%s@db1/equities" % SECRET, {SECRET}),
        ("postgresql://deploy:p%40ss%3Aw@db1/equities", {"p%40ss%3Aw", "p@ss:w"}),
        ("postgresql://deploy:pa/ss@w@db1/equities", {"pa/ss@w"}),
        ("postgresql://deploy@db1/equities?sslmode=require&password=%s" % SECRET, {SECRET}),
        ("postgresql://deploy@db1/equities?passfile=/home/x/.pgpass", {"/home/x/.pgpass"}),
        ("postgresql://deploy@db1/equities?sslcert=/etc/a@b.crt", set()),
        ("postgresql://deploy@db1/equities", set()),
        ("sqlite:////var/lib/app.db", set()),
        ("", set()),
    ],
)
def test_url_secrets_finds_every_password_a_url_carries(url: str, secrets: set[str]) -> None:
    assert set(url_secrets(url)) == secrets


def test_url_secrets_of_no_url() -> None:
    assert url_secrets(None) == [] and url_secrets(42) == []


# -- the connection description (socket, options) ------------------------------------
def test_unix_socket_url_keeps_its_directory() -> None:
    target = parse_target("postgresql://migrator@/equities?host=/run/postgresql", None)
    assert target.host == "/run/postgresql" and target.port == 5432
    assert target.label == "migrator@/run/postgresql:5432/equities"
    params = libpq_params(target)
    assert params["host"] == "/run/postgresql" and params["dbname"] == "equities" and params["user"] == "migrator"


def test_query_port_and_ssl_options_are_kept_in_order() -> None:
    target = parse_target(
        "postgresql://migrator@db1.example.com/equities?sslmode=verify-full&sslrootcert=/etc/ca.crt&sslcert=/c.crt&sslkey=/c.key&keepalives=1", SECRET
    )
    assert target.options == (("sslmode", "verify-full"), ("sslrootcert", "/etc/ca.crt"), ("sslcert", "/c.crt"), ("sslkey", "/c.key"), ("keepalives", "1"))
    params = libpq_params(target, application_name="alembic-fleet-backup")
    assert params["sslmode"] == "verify-full" and params["sslrootcert"] == "/etc/ca.crt" and params["keepalives"] == "1"
    assert params["application_name"] == "alembic-fleet-backup"
    assert SECRET not in repr(params) and "password" not in params
    socket = parse_target("postgresql://migrator@/equities?host=/tmp/s&port=6543", None)
    assert (socket.host, socket.port, socket.options) == ("/tmp/s", 6543, ())


@pytest.mark.parametrize(
    "url, phrase",
    [
        ("postgresql://migrator@db1/equities?host=/run/postgresql", "names the host twice"),
        ("postgresql://migrator@db1:5433/equities?port=5434", "names the port twice"),
        ("postgresql://migrator@/equities?host=/tmp&port=x", "invalid ?port=x"),
    ],
)
def test_ambiguous_host_or_port_is_refused(url: str, phrase: str) -> None:
    assert phrase in refusal(url)


@pytest.mark.parametrize("dbname", ["equities", "a=b", "with space", "it's", "back\\slash", "host=evil port=1"])
def test_conninfo_keeps_every_value_data(dbname: str) -> None:
    """libpq's own parser (through psycopg2) reads back exactly what was put in."""
    from psycopg2.extensions import parse_dsn

    params = {"host": "/run/postgresql", "port": "5432", "dbname": dbname, "user": "migrator"}
    assert parse_dsn(conninfo(params)) == params


# -- environment -----------------------------------------------------------------
def test_environment_sets_unsets_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_T_KEEP", "old")
    monkeypatch.setenv("FLEET_T_DROP", "present")
    monkeypatch.setenv("FLEET_T_EMPTY", "")
    monkeypatch.delenv("FLEET_T_NEW", raising=False)
    monkeypatch.delenv("FLEET_T_ABSENT", raising=False)
    overrides: dict[str, str | None] = {
        "FLEET_T_KEEP": "new",
        "FLEET_T_DROP": None,
        "FLEET_T_EMPTY": "filled",
        "FLEET_T_NEW": "added",
        "FLEET_T_ABSENT": None,
    }
    with environment(overrides):
        assert os.environ["FLEET_T_KEEP"] == "new"
        assert "FLEET_T_DROP" not in os.environ
        assert os.environ["FLEET_T_EMPTY"] == "filled"
        assert os.environ["FLEET_T_NEW"] == "added"
        assert "FLEET_T_ABSENT" not in os.environ
    assert os.environ["FLEET_T_KEEP"] == "old"
    assert os.environ["FLEET_T_DROP"] == "present"
    assert os.environ["FLEET_T_EMPTY"] == ""
    assert "FLEET_T_NEW" not in os.environ
    assert "FLEET_T_ABSENT" not in os.environ


def test_environment_restores_after_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_T_KEEP", "old")
    monkeypatch.delenv("FLEET_T_NEW", raising=False)
    with pytest.raises(ValueError):
        with environment({"FLEET_T_KEEP": None, "FLEET_T_NEW": "added"}):
            raise ValueError("boom")
    assert os.environ["FLEET_T_KEEP"] == "old"
    assert "FLEET_T_NEW" not in os.environ


def test_environment_restores_changes_made_inside_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_T_KEEP", "old")
    with environment({"FLEET_T_KEEP": "new"}):
        os.environ["FLEET_T_KEEP"] = "changed by env.py"
    assert os.environ["FLEET_T_KEEP"] == "old"
