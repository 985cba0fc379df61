# -*- coding: utf-8 -*-
# The module options the operations share, read ONCE from a module's params at
# the operation's entry into frozen dataclasses, with their defaults in this one
# place. Inside, the operations pass these (and named, typed values) on, never
# the params dict. A value that is unset, empty or 0 where 0 means nothing takes
# the default, as the modules always did; a bad one is refused here, in one
# sentence, before anything is reached.
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ansible.module_utils.fleet.core.common import DbTarget, FleetError, check_seconds, parse_target

DEFAULT_CONNECT_TIMEOUT = 10  # seconds libpq waits for the server
DEFAULT_MAINTENANCE_DB = "postgres"  # the database a PostgreSQL server's admin statements run from
DEFAULT_INI_SECTION = "alembic"
DEFAULT_LEDGER_TABLE = "alembic_fleet_ledger"  # state.ledger.DEFAULT_TABLE
DEFAULT_VERSION_TABLE = "alembic_version"
DEFAULT_LEDGER_LIMIT = 5  # ledger rows status reads
DEFAULT_LONG_TRANSACTION_SECONDS = 60.0  # a transaction older than this blocks a migration
DEFAULT_TARGET = "head"


def given(params: dict[str, Any], name: str, default: Any) -> Any:
    """params[name], or default when it is unset or empty (None, "", 0, []): the one place of `or default`."""
    return params.get(name) or default


@dataclass(frozen=True)
class Connection:
    """Which database, and how to reach it: url, password, connect_timeout and the maintenance database."""

    target: DbTarget
    maintenance_db: str = DEFAULT_MAINTENANCE_DB

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Connection:
        target = parse_target(params["url"], params.get("password"), given(params, "connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        return cls(target=target, maintenance_db=given(params, "maintenance_db", DEFAULT_MAINTENANCE_DB))

    def as_params(self) -> dict[str, Any]:
        """The connection as module params again (url password-free), for an operation run in this process."""
        target = self.target
        password = "" if target.password_empty else target.password
        return {"url": target.url, "password": password, "connect_timeout": target.connect_timeout, "maintenance_db": self.maintenance_db}


@dataclass(frozen=True)
class Project:
    """Where the Alembic project is: config (alembic.ini), project_dir, ini_section."""

    config: str
    project_dir: str | None = None
    ini_section: str = DEFAULT_INI_SECTION

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Project:
        return cls(config=params["config"], project_dir=params.get("project_dir"), ini_section=given(params, "ini_section", DEFAULT_INI_SECTION))


@dataclass(frozen=True)
class LedgerOptions:
    """The run ledger's table and how many of its rows status reads."""

    table: str = DEFAULT_LEDGER_TABLE
    limit: int = DEFAULT_LEDGER_LIMIT

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> LedgerOptions:
        return cls(table=given(params, "ledger_table", DEFAULT_LEDGER_TABLE), limit=given(params, "ledger_limit", DEFAULT_LEDGER_LIMIT))


@dataclass(frozen=True)
class LockOptions:
    """The run lock: how long to wait for another run's (lock_wait), and how often a migration that gave up on a
    table lock is tried again (lock_retries, lock_retry_delay with jittered backoff)."""

    wait: float = 0.0
    retries: int = 0
    retry_delay: float = 0.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> LockOptions:
        for option, fix in (
            ("lock_wait", "give 0 or more seconds to wait for another run's lock (0: do not wait)"),
            ("lock_retries", "give 0 or more retries (0: do not retry)"),
            ("lock_retry_delay", "give 0 or more seconds between retries"),
        ):
            check_seconds(option, params.get(option), fix)
        return cls(wait=given(params, "lock_wait", 0.0), retries=given(params, "lock_retries", 0), retry_delay=given(params, "lock_retry_delay", 0.0))


@dataclass(frozen=True)
class Timeouts:
    """How a migration's session waits: the server's lock_timeout and statement_timeout (None: the server's own),
    one transaction for the plan or one per revision, what counts as a long transaction and how long to wait for
    blocking sessions to end (wait_for_quiet; 0: do not wait)."""

    lock_timeout: float | None = None
    statement_timeout: float | None = None
    transaction: str = "plan"
    long_transaction_seconds: float = DEFAULT_LONG_TRANSACTION_SECONDS
    wait_for_quiet: float = 0.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Timeouts:
        for option, fix in (
            ("wait_for_quiet", "give 0 or more seconds to wait for blocking sessions (0: do not wait)"),
            ("long_transaction_seconds", "give 0 or more seconds"),
        ):
            check_seconds(option, params.get(option), fix)
        long_seconds = params.get("long_transaction_seconds")
        timeouts = cls(
            lock_timeout=params.get("lock_timeout"),
            statement_timeout=params.get("statement_timeout"),
            transaction=given(params, "transaction", "plan"),
            long_transaction_seconds=DEFAULT_LONG_TRANSACTION_SECONDS if long_seconds is None else float(long_seconds),
            wait_for_quiet=given(params, "wait_for_quiet", 0.0),
        )
        timeouts.session_settings()  # a negative lock_timeout or statement_timeout is refused now
        return timeouts

    @property
    def per_revision(self) -> bool:
        return self.transaction == "revision"

    def session_settings(self) -> dict[str, str]:
        """PostgreSQL settings for the migration's connection; a negative timeout is refused."""
        settings = {"client_connection_check_interval": "1s"}  # a killed client ends its query within a second
        for option, seconds in (("lock_timeout", self.lock_timeout), ("statement_timeout", self.statement_timeout)):
            if seconds is not None:
                if seconds < 0:
                    raise FleetError("%s %s is negative: give seconds, or 0 for no limit." % (option, seconds))
                settings[option] = "%dms" % int(seconds * 1000)
        return settings


@dataclass(frozen=True)
class AlembicOptions:
    """What every alembic_* operation reads from its params: the database, the project, the revision target, the
    ledger, the run lock and the timeouts. The waits and counts are checked first, before the URL and the project."""

    connection: Connection
    project: Project
    target: str | None = None  # the revision target as given (None: the operation's default)
    ledger: LedgerOptions = LedgerOptions()
    lock: LockOptions = LockOptions()
    timeouts: Timeouts = Timeouts()
    create_database: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> AlembicOptions:
        lock = LockOptions.from_params(params)
        timeouts = Timeouts.from_params(params)
        return cls(
            connection=Connection.from_params(params),
            project=Project.from_params(params),
            target=params.get("target"),
            ledger=LedgerOptions.from_params(params),
            lock=lock,
            timeouts=timeouts,
            create_database=bool(params.get("create_database")),
        )
