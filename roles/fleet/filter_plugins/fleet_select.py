"""The fleet role's decisions, as Jinja filters: which databases an entry point visits, and each entry resolved once.

Role-adjacent (roles/fleet/filter_plugins), so Ansible finds it wherever the playbook is run from, ansible.cfg read or
not. Every function is pure: it reads the inventory entries and module results it is given and returns plain data, so
the unit tests (tests/unit/fleet_role/test_fleet_select.py) need no Ansible run and no database.

A database entry may hold a password: only fleet_status_entries (a module argument, which the module declares no_log)
copies it; fleet_entry, which the role keeps as a fact, never does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ansible.plugins.filter.core import to_bool  # `| bool`, exactly as the tasks read a flag

Entry = Mapping[str, Any]


def _name(entry: Entry) -> str:
    # Not a mapping: an inventory the argument spec has not judged yet (plan_run reads every host's, before that).
    return str(entry.get("name", "")) if isinstance(entry, Mapping) else ""


def _alembic_ini(entry: Entry, project_root: str) -> str:
    """An absolute alembic_ini as given; a relative one from the project root, resolved (the modules' working directory
    is not the checkout's)."""
    path = str(entry["alembic_ini"])
    return path if os.path.isabs(path) else os.path.realpath(project_root + "/" + path)


def _backup_dir(backup_root: str, environment: str, host: str, name: str) -> str:
    """<root>/<environment>/<host>/<database>: the backup tree's layout (module_utils' catalog reads the same)."""
    return "/".join((backup_root, environment, host, name))


def fleet_pick(databases: Sequence[Entry], names: Iterable[str] | None = None) -> list[int]:
    """Indexes of the entries named in `names`, in inventory order; every entry when `names` is empty.

    Indexes, not entries: the role loops over them, and a loop item is printed at -v (an entry may hold a password)."""
    wanted = set(names or [])
    return [index for index, entry in enumerate(databases) if not wanted or _name(entry) in wanted]


def _has_work(status: Entry, post_backup: bool) -> bool:
    """A database the procedure must visit: unreadable, an ambiguous target, pending revisions, or (with post-upgrade
    backups on) a verified upgrade whose post-upgrade backup the last run did not take."""
    return bool(
        status.get("failed")
        or status.get("target_ambiguous", False)
        or status.get("pending_count", 0) > 0
        or (post_backup and status.get("post_backup_missing", False))
    )


def fleet_with_work(indexes: Iterable[int], statuses: Sequence[Entry], post_backup: bool = False) -> list[int]:
    """The indexes (fleet_pick's) whose database has work, from the host's one status call (alembic_status databases=)."""
    return [index for index in indexes if _has_work(statuses[index], post_backup)]


def _is_idle(status: Entry, post_backup: bool) -> bool:
    """A database with nothing to do: read, one target, nothing pending, no post-upgrade backup owed."""
    ambiguous = status.get("target_ambiguous", status.get("multiple_heads", False))
    return bool(
        not status.get("failed") and not ambiguous and status.get("pending_count", 0) == 0 and not (post_backup and status.get("post_backup_missing", False))
    )


def fleet_idle(statuses: Sequence[Entry], post_backup: bool = False) -> list[Entry]:
    """The host's status entries with nothing to do, in inventory order (the migrate procedure does not visit them)."""
    return [status for status in statuses if _is_idle(status, post_backup)]


def fleet_plan(indexes: Iterable[int], databases: Sequence[Entry], host: str) -> list[str]:
    """The "<host>/<database>" of each index, in order: the plan the alembic_fleet stdout callback reads
    (fleet_summary_plan) to say which database failed and which were not reached."""
    return ["%s/%s" % (host, _name(databases[index])) for index in indexes]


def _revisions(revisions: Sequence[str]) -> str:
    return ", ".join(revisions) or "base"


def fleet_idle_lines(statuses: Iterable[Entry], host: str) -> list[str]:
    """The summary line of each database with nothing to do (fleet_idle's)."""
    return ["%s/%s: at %s, nothing to do" % (host, _name(status), _revisions(status.get("current") or [])) for status in statuses]


def fleet_idle_outcomes(statuses: Iterable[Entry], host: str, context: Entry) -> dict[str, dict[str, Any]]:
    """The machine-readable outcome (set_stats alembic_fleet) of each database with nothing to do, in the shape the
    migrate procedure's summary gives the others; `context` holds check_mode, environment and run_id."""
    return {
        "%s/%s" % (host, _name(status)): {
            "outcome": "unchanged",
            "check_mode": context["check_mode"],
            "environment": context["environment"],
            "run_id": context.get("run_id") or None,
            "before": status.get("current"),
            "after": status.get("current"),
            "revisions": 0,
            "duration": None,
            "backup": None,
            "post_upgrade_backup": None,
            "ledger_entry_id": None,
        }
        for status in statuses
    }


def fleet_entry(
    entry: Entry,
    project_root: str,
    target: str,
    create_database: bool,
    backup_root: str,
    environment: str,
    host: str,
    run_id: str = "",
    operator: str = "",
) -> dict[str, Any]:
    """One database entry resolved once: what every module call of the role reads from it, with the role's defaults
    applied. No url and no password: the role keeps this as a fact, and facts are printed at -v.

    `record` is the ledger record without its action (each procedure adds its own): run_id is left out when empty."""
    name = _name(entry)
    record: dict[str, Any] = {"environment": environment, "host": host, "name": name, "operator": operator}
    if run_id:
        record["run_id"] = run_id
    resolved: dict[str, Any] = {
        "name": name,
        "config": _alembic_ini(entry, project_root),
        "target": entry.get("target", target),
        "create_database": to_bool(entry.get("create_database", create_database)),
        "backup_dir": _backup_dir(backup_root, environment, host, name),
        "record": record,
    }
    if "project_dir" in entry:
        resolved["project_dir"] = entry["project_dir"]
    return resolved


def fleet_status_entries(
    databases: Iterable[Entry],
    project_root: str,
    target: str,
    create_database: bool,
    backup_root: str | None,
    environment: str,
    host: str,
    drift_allow: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The `databases` argument of the host's one alembic_status call (the module declares its password no_log).

    `backup_root` None: the call does not look at backups (the migrate procedure without post-upgrade backups)."""
    entries = []
    for entry in databases:
        name = _name(entry)
        entries.append(
            {
                "name": name,
                "config": _alembic_ini(entry, project_root),
                "project_dir": entry.get("project_dir"),
                "url": entry["url"],
                "password": entry.get("password"),
                "target": entry.get("target", target),
                "create_database": to_bool(entry.get("create_database", create_database)),
                "backup_dir": None if backup_root is None else _backup_dir(backup_root, environment, host, name),
                "drift_allow": [*drift_allow, *(entry.get("drift_allow") or [])],
                "acknowledge": entry.get("acknowledge"),
            }
        )
    return entries


def fleet_with_connection(entries: Iterable[Entry], databases: Sequence[Entry]) -> list[dict[str, Any]]:
    """The `databases` argument of the host's one alembic_upgrade call: each planned entry (kept as a fact, so it holds
    no secret; `index` is its place in fleet_databases) with that database's url and password, added in the call's
    arguments only (the module declares the password no_log)."""
    calls = []
    for planned in entries:
        database = databases[int(planned["index"])]
        calls.append({**{key: value for key, value in planned.items() if key != "index"}, "url": database["url"], "password": database.get("password")})
    return calls


def fleet_missing_ini(databases: Iterable[Entry], project_root: str) -> list[str]:
    """One sentence for each entry whose alembic_ini is not a file (checked on the control node, where the modules of
    a local connection read it): which entry, the path as given, and where that led."""
    found = []
    for entry in databases:
        given = entry.get("alembic_ini")
        if not isinstance(given, str) or not given:
            continue  # the argument spec reports a missing alembic_ini
        path = given if os.path.isabs(given) else project_root + "/" + given
        if not os.path.isfile(path):
            what = "a directory" if os.path.isdir(path) else "not there"
            found.append("the alembic_ini of %s, %s, is %s: %s" % (_name(entry), given, what, path))
    return found


def fleet_plans(hosts: Iterable[str], databases_of: Mapping[str, Sequence[Entry]], only: Any = None) -> dict[str, list[str]]:
    """For each host, "<host>/<database>" for each of its databases that fleet_only picks (all when it is empty): the
    plans of the whole run, so that a host the run never reaches still gets its "not reached" lines.

    `only` is fleet_only as given: a list, or text with commas (-e fleet_only=a,b)."""
    names = _names(only)
    plans = {}
    for host in hosts:
        known = [_name(entry) for entry in databases_of.get(host) or []]
        plans[host] = ["%s/%s" % (host, name) for name in known if name and (not names or name in names)]
    return plans


def _names(value: Any) -> list[str]:
    """fleet_only / fleet_confirm as a list of names: a list, or text with commas; blanks dropped."""
    items = value if isinstance(value, list) else [value or ""]
    return [name.strip() for item in items for name in str(item).split(",") if name.strip()]


def fleet_rows(results: Iterable[Entry], context: Entry, drop: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Module results as report rows: `context` (environment, host, policy) under each result's own keys, without the
    keys in `drop` (Ansible's changed, failed, invocation)."""
    dropped = set(drop)
    return [{**context, **{key: value for key, value in result.items() if key not in dropped}} for result in results]


def _number(value: Any) -> float:
    """Jinja's `| float(0)`: a value that is no number counts as 0 (its type is the argument spec's to judge)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def fleet_negative(fixes: Mapping[str, str], values: Sequence[Any]) -> list[str]:
    """One sentence for each fleet_<option> given a negative value: `fixes` maps each option to what to give instead,
    `values` holds the options' values in the same order (0 for one not set)."""
    return ["fleet_%s is %s: %s" % (option, value, fix) for (option, fix), value in zip(fixes.items(), values, strict=True) if _number(value) < 0]


class FilterModule:
    """The role's filters (Ansible loads the class by this name)."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "fleet_pick": fleet_pick,
            "fleet_with_work": fleet_with_work,
            "fleet_idle": fleet_idle,
            "fleet_plan": fleet_plan,
            "fleet_idle_lines": fleet_idle_lines,
            "fleet_idle_outcomes": fleet_idle_outcomes,
            "fleet_entry": fleet_entry,
            "fleet_status_entries": fleet_status_entries,
            "fleet_with_connection": fleet_with_connection,
            "fleet_missing_ini": fleet_missing_ini,
            "fleet_plans": fleet_plans,
            "fleet_rows": fleet_rows,
            "fleet_negative": fleet_negative,
        }
