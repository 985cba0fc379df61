"""Unit tests of module_utils/fleet/core/options.py: the options every operation reads once from its params.

No database: the defaults, what an unset or empty option becomes, and the one-line refusal of each bad value.
"""

from __future__ import annotations

from typing import Any

import pytest

from ansible.module_utils.fleet.core.common import FleetError, parse_target
from ansible.module_utils.fleet.core.options import (
    DEFAULT_LEDGER_TABLE,
    AlembicOptions,
    Connection,
    LedgerOptions,
    LockOptions,
    Project,
    Timeouts,
)
from ansible.module_utils.fleet.state.ledger import DEFAULT_TABLE

PG_URL = "postgresql://migrator@db1:5432/equities"


# -- Connection ------------------------------------------------------------------------------
def test_connection_defaults() -> None:
    connection = Connection.from_params({"url": PG_URL})
    assert connection.maintenance_db == "postgres"
    assert connection.target.connect_timeout == 10
    assert connection.target.password is None
    assert (connection.target.host, connection.target.dbname, connection.target.driver) == ("db1", "equities", "psycopg2")


@pytest.mark.parametrize("unset", [None, "", 0])
def test_connection_unset_or_empty_takes_the_defaults(unset: Any) -> None:
    connection = Connection.from_params({"url": PG_URL, "connect_timeout": unset, "maintenance_db": unset or None})
    assert (connection.target.connect_timeout, connection.maintenance_db) == (10, "postgres")


def test_connection_as_given() -> None:
    connection = Connection.from_params({"url": PG_URL, "password": "s3cret", "connect_timeout": 3, "maintenance_db": "template1"})
    assert (connection.target.password, connection.target.connect_timeout, connection.maintenance_db) == ("s3cret", 3, "template1")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"url": PG_URL, "connect_timeout": -1}, "connect_timeout is -1: give 1 or more seconds to wait for the server (default 10); nothing was touched."),
        ({"url": "postgresql://migrator:pw@db1/equities"}, "url contains a password: remove it from the URL"),
        ({"url": "mysql://db1/x"}, "url uses the unsupported dialect 'mysql'"),
    ],
)
def test_connection_refuses_bad_values(params: dict[str, Any], message: str) -> None:
    with pytest.raises(FleetError) as caught:
        Connection.from_params(params)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("password", [None, "", "s3cret"])
def test_connection_as_params_gives_the_same_target_again(password: str | None) -> None:
    """alembic_upgrade hands its connection to db_backup's params: the same target, the empty password kept empty."""
    connection = Connection.from_params({"url": "postgres://migrator@db1/equities?sslmode=require", "password": password, "connect_timeout": 4})
    again = connection.as_params()
    assert parse_target(again["url"], again["password"], again["connect_timeout"]) == connection.target
    assert again["password"] == password


def test_connection_as_params_of_a_relative_sqlite_file_is_absolute(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    again = Connection.from_params({"url": "sqlite:///x.db"}).as_params()
    assert again["url"] == "sqlite:///%s/x.db" % tmp_path


# -- Project, ledger -------------------------------------------------------------------------
def test_project_defaults_and_given() -> None:
    assert Project.from_params({"config": "a/alembic.ini"}) == Project("a/alembic.ini", None, "alembic")
    assert Project.from_params({"config": "a/alembic.ini", "ini_section": ""}).ini_section == "alembic"
    assert Project.from_params({"config": "c.ini", "project_dir": "/p", "ini_section": "equities"}) == Project("c.ini", "/p", "equities")


def test_ledger_default_is_the_ledgers_own() -> None:
    assert DEFAULT_LEDGER_TABLE == DEFAULT_TABLE
    assert LedgerOptions.from_params({}) == LedgerOptions(DEFAULT_TABLE, 5)
    assert LedgerOptions.from_params({"ledger_table": None, "ledger_limit": 0}) == LedgerOptions(DEFAULT_TABLE, 5)
    assert LedgerOptions.from_params({"ledger_table": "runs", "ledger_limit": 20}) == LedgerOptions("runs", 20)


# -- the lock and the timeouts ----------------------------------------------------------------
def test_lock_defaults_and_given() -> None:
    assert LockOptions.from_params({}) == LockOptions(0.0, 0, 0.0)
    assert LockOptions.from_params({"lock_wait": 60, "lock_retries": 3, "lock_retry_delay": 1.5}) == LockOptions(60, 3, 1.5)


@pytest.mark.parametrize(
    "option, fix",
    [
        ("lock_wait", "give 0 or more seconds to wait for another run's lock (0: do not wait)"),
        ("lock_retries", "give 0 or more retries (0: do not retry)"),
        ("lock_retry_delay", "give 0 or more seconds between retries"),
    ],
)
def test_lock_refuses_a_negative_value(option: str, fix: str) -> None:
    with pytest.raises(FleetError) as caught:
        LockOptions.from_params({option: -2})
    assert str(caught.value) == "%s is -2: %s; nothing was touched." % (option, fix)


def test_lock_refuses_nan() -> None:
    with pytest.raises(FleetError, match="lock_wait is nan"):
        LockOptions.from_params({"lock_wait": float("nan")})


def test_timeouts_defaults() -> None:
    timeouts = Timeouts.from_params({})
    assert timeouts == Timeouts(None, None, "plan", 60.0, 0.0)
    assert not timeouts.per_revision
    assert timeouts.session_settings() == {"client_connection_check_interval": "1s"}


def test_timeouts_given() -> None:
    timeouts = Timeouts.from_params(
        {"lock_timeout": 2.5, "statement_timeout": 0, "transaction": "revision", "long_transaction_seconds": 0, "wait_for_quiet": 30}
    )
    assert timeouts.per_revision
    assert timeouts.long_transaction_seconds == 0.0  # 0 is a value here (every transaction counts), not "unset"
    assert timeouts.wait_for_quiet == 30
    assert timeouts.session_settings() == {"client_connection_check_interval": "1s", "lock_timeout": "2500ms", "statement_timeout": "0ms"}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"wait_for_quiet": -1}, "wait_for_quiet is -1: give 0 or more seconds to wait for blocking sessions (0: do not wait); nothing was touched."),
        ({"long_transaction_seconds": -5}, "long_transaction_seconds is -5: give 0 or more seconds; nothing was touched."),
        ({"lock_timeout": -1}, "lock_timeout -1 is negative: give seconds, or 0 for no limit."),
        ({"statement_timeout": -0.5}, "statement_timeout -0.5 is negative: give seconds, or 0 for no limit."),
    ],
)
def test_timeouts_refuse_bad_values(params: dict[str, Any], message: str) -> None:
    with pytest.raises(FleetError) as caught:
        Timeouts.from_params(params)
    assert str(caught.value) == message


# -- all of them at once ----------------------------------------------------------------------
def test_alembic_options_from_params() -> None:
    options = AlembicOptions.from_params({"url": PG_URL, "config": "alembic.ini", "target": "+1", "create_database": True, "lock_wait": 5})
    assert options.target == "+1"
    assert options.create_database
    assert options.lock.wait == 5
    assert options.connection.target.dbname == "equities"
    assert options.project.config == "alembic.ini"
    assert options.ledger.table == DEFAULT_TABLE


def test_alembic_options_check_the_waits_before_the_url() -> None:
    """The waits are refused first, as open_run always did: a wrong wait is named even when the URL is wrong too."""
    with pytest.raises(FleetError, match=r"^lock_wait is -1"):
        AlembicOptions.from_params({"url": "mysql://x/y", "config": "alembic.ini", "lock_wait": -1})
    with pytest.raises(FleetError, match=r"^url uses the unsupported dialect"):
        AlembicOptions.from_params({"url": "mysql://x/y", "config": "alembic.ini"})


def test_options_are_frozen() -> None:
    options = LockOptions()
    with pytest.raises(AttributeError):
        options.wait = 5  # type: ignore[misc]
