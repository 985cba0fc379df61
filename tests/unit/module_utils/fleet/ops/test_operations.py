"""Unit tests of the decisions in module_utils/fleet/ops/operations.py, without a database server.

Planning and the "which step failed" decisions run against the bundled equities project (five revisions in a line)
and a small two-branch project written to tmp_path, loaded by Alembic itself; everything else is plain data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from ansible.module_utils.fleet.alembic.run import AlembicRun, Step, load_project
from ansible.module_utils.fleet.core.common import FleetError, parse_target
from ansible.module_utils.fleet.core.options import LockOptions, Timeouts
from ansible.module_utils.fleet.ops.operations import (
    _committed_steps,
    _failing_step,
    _is_lock_timeout,
    _mark_interrupted,
    _post_backup_missing,
    _predict_heads,
    _review_downgrade,
    _revision_text,
    _status_target,
    _with_lock_retries,
)
from ansible.module_utils.fleet.state.ledger import FAILED, INTERRUPTED, RUNNING, SUCCEEDED

REPO = Path(__file__).resolve().parents[5]
EQUITIES_INI = REPO / "migrations" / "equities" / "alembic.ini"
HISTORY = ["a1c3e5f70b21", "b2d4f6081c32", "c3e5071a2d43", "d4f6182b3e54", "e5f7293c4a65"]  # oldest first


def step(revision: str, down: tuple[str, ...], direction: str = "upgrade") -> Step:
    return Step(revision=revision, down_revision=down, message="", path="%s.py" % revision, direction=direction)


@pytest.fixture()
def equities(tmp_path: Path) -> Iterator[AlembicRun]:
    run = AlembicRun(load_project(str(EQUITIES_INI)), parse_target("sqlite:///" + str(tmp_path / "x.db"), None))
    with run.session():
        yield run


def branched_ini(root: Path) -> Path:
    """alpha: aaaa0000 -> aaaa0001; beta: bbbb0000 (two heads)."""
    root.mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s\n")
    (root / "versions").mkdir()
    for rev, down, labels in [
        ("aaaa0000", None, ("alpha",)),
        ("aaaa0001", "aaaa0000", None),
        ("bbbb0000", None, ("beta",)),
    ]:
        text = '"""%s"""\nrevision = %r\ndown_revision = %r\nbranch_labels = %r\ndepends_on = None\n\n' % (rev, rev, down, labels)
        (root / "versions" / ("%s.py" % rev)).write_text(text + "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n")
    return root / "alembic.ini"


@pytest.fixture()
def branched(tmp_path: Path) -> Iterator[AlembicRun]:
    run = AlembicRun(load_project(str(branched_ini(tmp_path / "project"))), parse_target("sqlite:///" + str(tmp_path / "x.db"), None))
    with run.session():
        yield run


def planned(run: AlembicRun, direction: str, target: str, current: list[str]) -> list[Step]:
    return run.plan(direction, run.parse(target, direction), current)


# -- _predict_heads -----------------------------------------------------------------
def test_predict_heads_of_a_linear_upgrade_is_the_last_revision(equities: AlembicRun) -> None:
    steps = planned(equities, "upgrade", "head", [HISTORY[1]])
    assert _predict_heads([HISTORY[1]], steps) == [HISTORY[-1]]


def test_predict_heads_from_an_empty_database(equities: AlembicRun) -> None:
    assert _predict_heads([], planned(equities, "upgrade", "head", [])) == [HISTORY[-1]]


def test_predict_heads_of_a_downgrade_is_the_parent_of_the_last_undone(equities: AlembicRun) -> None:
    steps = planned(equities, "downgrade", HISTORY[2], [HISTORY[-1]])
    assert _predict_heads([HISTORY[-1]], steps) == [HISTORY[2]]


def test_predict_heads_of_a_downgrade_to_base_is_empty(equities: AlembicRun) -> None:
    assert _predict_heads([HISTORY[-1]], planned(equities, "downgrade", "base", [HISTORY[-1]])) == []


def test_predict_heads_of_a_merge_replaces_both_parents() -> None:
    steps = [step("mmmm0000", ("aaaa0001", "bbbb0000"))]
    assert _predict_heads(["aaaa0001", "bbbb0000"], steps) == ["mmmm0000"]


def test_predict_heads_undoing_a_merge_gives_back_both_parents_once() -> None:
    steps = [step("mmmm0000", ("aaaa0001", "bbbb0000"), "downgrade")]
    assert _predict_heads(["mmmm0000"], steps) == ["aaaa0001", "bbbb0000"]
    # a parent that is already a head is not listed twice
    assert _predict_heads(["mmmm0000", "bbbb0000"], steps) == ["bbbb0000", "aaaa0001"]


def test_predict_heads_keeps_the_other_branch(branched: AlembicRun) -> None:
    steps = planned(branched, "upgrade", "alpha@head", ["bbbb0000"])
    assert [s.revision for s in steps] == ["aaaa0000", "aaaa0001"]
    assert sorted(_predict_heads(["bbbb0000"], steps)) == ["aaaa0001", "bbbb0000"]


# -- _revision_text -------------------------------------------------------------------
def test_revision_text() -> None:
    assert _revision_text([]) == "revision: base (unversioned)\n"
    assert _revision_text(["a1"]) == "revision: a1\n"
    assert _revision_text(["a1", "b2"]) == "revision: a1, b2\n"


# -- _failing_step / _committed_steps ---------------------------------------------------
def test_upgrade_that_failed_in_the_middle(equities: AlembicRun) -> None:
    steps = planned(equities, "upgrade", "head", [HISTORY[0]])  # b, c, d, e
    now = [HISTORY[2]]  # b and c committed (one transaction each), d failed
    failing = _failing_step(equities, steps, now, "upgrade")
    assert failing is not None and failing.revision == HISTORY[3]
    assert [s.revision for s in _committed_steps(equities, steps, now, "upgrade")] == HISTORY[1:3]


def test_upgrade_that_failed_on_the_first_step_committed_nothing(equities: AlembicRun) -> None:
    steps = planned(equities, "upgrade", "head", [HISTORY[0]])
    failing = _failing_step(equities, steps, [HISTORY[0]], "upgrade")
    assert failing is not None and failing.revision == HISTORY[1]
    assert _committed_steps(equities, steps, [HISTORY[0]], "upgrade") == []


def test_upgrade_from_empty_that_failed_on_the_first_step(equities: AlembicRun) -> None:
    steps = planned(equities, "upgrade", "head", [])
    failing = _failing_step(equities, steps, [], "upgrade")
    assert failing is not None and failing.revision == HISTORY[0]


def test_upgrade_that_reached_its_target_has_no_failing_step(equities: AlembicRun) -> None:
    steps = planned(equities, "upgrade", "head", [HISTORY[0]])
    assert _failing_step(equities, steps, [HISTORY[-1]], "upgrade") is None
    assert _committed_steps(equities, steps, [HISTORY[-1]], "upgrade") == steps


def test_downgrade_that_failed_in_the_middle(equities: AlembicRun) -> None:
    steps = planned(equities, "downgrade", "base", [HISTORY[-1]])  # e, d, c, b, a
    now = [HISTORY[2]]  # e and d undone, c failed
    failing = _failing_step(equities, steps, now, "downgrade")
    assert failing is not None and failing.revision == HISTORY[2]
    assert [s.revision for s in _committed_steps(equities, steps, now, "downgrade")] == [HISTORY[4], HISTORY[3]]


def test_downgrade_that_reached_base_has_no_failing_step(equities: AlembicRun) -> None:
    steps = planned(equities, "downgrade", "base", [HISTORY[-1]])
    assert _failing_step(equities, steps, [], "downgrade") is None


def test_failing_step_on_one_branch_leaves_the_other_alone(branched: AlembicRun) -> None:
    steps = planned(branched, "upgrade", "heads", [])
    now = ["aaaa0000", "bbbb0000"]  # alpha's second revision failed; beta's root committed
    failing = _failing_step(branched, steps, now, "upgrade")
    assert failing is not None and failing.revision == "aaaa0001"
    assert sorted(s.revision for s in _committed_steps(branched, steps, now, "upgrade")) == ["aaaa0000", "bbbb0000"]


# -- _is_lock_timeout ---------------------------------------------------------------
class _DriverError(Exception):
    def __init__(self, message: str, pgcode: str | None = None) -> None:
        super().__init__(message)
        self.pgcode = pgcode


def _wrapped(orig: Exception) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("ALTER TABLE t ADD c int", {}, orig)


def test_lock_timeout_by_sqlstate() -> None:
    assert _is_lock_timeout(_wrapped(_DriverError("could not obtain lock", "55P03")))


def test_lock_timeout_by_message() -> None:
    assert _is_lock_timeout(_wrapped(_DriverError("canceling statement due to lock timeout")))
    assert _is_lock_timeout(RuntimeError("lock timeout"))


@pytest.mark.parametrize(
    "exc",
    [
        _wrapped(_DriverError("canceling statement due to statement timeout", "57014")),
        _wrapped(_DriverError("deadlock detected", "40P01")),
        RuntimeError("relation t does not exist"),
    ],
)
def test_other_failures_are_no_lock_timeout(exc: BaseException) -> None:
    assert not _is_lock_timeout(exc)


# -- _with_lock_retries (the attempts that never reach describe_blocker) ------------------
def test_with_lock_retries_counts_no_retry_on_success() -> None:
    calls: list[int] = []
    assert _with_lock_retries(cast(AlembicRun, None), LockOptions(retries=3), None, lambda: calls.append(1)) == 0
    assert calls == [1]


def test_with_lock_retries_does_not_retry_other_failures() -> None:
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise RuntimeError("relation t does not exist")

    with pytest.raises(RuntimeError):
        _with_lock_retries(cast(AlembicRun, None), LockOptions(retries=3), None, attempt)
    assert calls == [1]


# -- the session's timeouts (Timeouts.session_settings) -------------------------------------
def _session_settings(params: dict[str, Any]) -> dict[str, str]:
    return Timeouts.from_params(params).session_settings()


def test_session_settings_default_leaves_timeouts_to_the_server() -> None:
    assert _session_settings({}) == {"client_connection_check_interval": "1s"}
    assert _session_settings({"lock_timeout": None, "statement_timeout": None}) == {"client_connection_check_interval": "1s"}


def test_session_settings_in_milliseconds() -> None:
    settings = _session_settings({"lock_timeout": 2.5, "statement_timeout": 0})
    assert settings == {"client_connection_check_interval": "1s", "lock_timeout": "2500ms", "statement_timeout": "0ms"}


def test_session_settings_refuse_a_negative_timeout() -> None:
    with pytest.raises(FleetError, match="lock_timeout -1 is negative: give seconds, or 0 for no limit"):
        _session_settings({"lock_timeout": -1})


# -- _post_backup_missing ---------------------------------------------------------------
CHANGE = {"action": "migrate", "outcome": SUCCEEDED, "to_revision": ["b2", "a1"], "finished_at": "2025-03-01T12:00:00Z"}
BACKUP_DIR = "/backups/prod/db1/equities"


def test_post_backup_missing_when_there_is_no_backup() -> None:
    assert _post_backup_missing(CHANGE, ["a1", "b2"], None, BACKUP_DIR)


def test_post_backup_taken_after_the_change() -> None:
    backup = {"revision": "a1+b2", "created_at": "2025-03-01T12:00:05Z"}
    assert not _post_backup_missing(CHANGE, ["a1", "b2"], backup, BACKUP_DIR)


def test_post_backup_of_the_same_second_counts() -> None:
    backup = {"revision": "a1+b2", "created_at": "2025-03-01T12:00:00Z"}
    assert not _post_backup_missing(CHANGE, ["a1", "b2"], backup, BACKUP_DIR)


def test_post_backup_missing_when_the_newest_backup_is_older() -> None:
    backup = {"revision": "a1+b2", "created_at": "2025-03-01T11:59:59Z"}
    assert _post_backup_missing(CHANGE, ["a1", "b2"], backup, BACKUP_DIR)


def test_post_backup_missing_when_the_newest_backup_is_of_another_revision() -> None:
    backup = {"revision": "a0", "created_at": "2025-03-01T12:30:00Z"}
    assert _post_backup_missing(CHANGE, ["a1", "b2"], backup, BACKUP_DIR)


@pytest.mark.parametrize(
    "change, current, backup_dir",
    [
        (CHANGE, ["a1", "b2"], None),  # no backup_dir: nothing to judge
        (None, ["a1", "b2"], BACKUP_DIR),  # no change recorded
        (CHANGE, [], BACKUP_DIR),  # an empty database
        ({**CHANGE, "action": "downgrade"}, ["a1", "b2"], BACKUP_DIR),
        ({**CHANGE, "action": "restore"}, ["a1", "b2"], BACKUP_DIR),
        ({**CHANGE, "outcome": FAILED}, ["a1", "b2"], BACKUP_DIR),
        ({**CHANGE, "to_revision": ["a1"]}, ["a1", "b2"], BACKUP_DIR),  # the database moved on since
    ],
)
def test_post_backup_not_asked_for(change: dict[str, Any] | None, current: list[str], backup_dir: str | None) -> None:
    assert not _post_backup_missing(change, current, None, backup_dir)


def test_post_backup_after_an_upgrade_action() -> None:
    assert _post_backup_missing({**CHANGE, "action": "upgrade"}, ["a1", "b2"], None, BACKUP_DIR)


# -- status: the target and dead runs ------------------------------------------------------
def test_status_target_of_one_head() -> None:
    assert _status_target(["e5"], None) == ("head", False)
    assert _status_target(["e5"], "head") == ("head", False)
    assert _status_target(["e5"], "c3") == ("c3", False)


def test_status_target_head_of_several_heads_reads_them_all() -> None:
    assert _status_target(["a1", "b2"], None) == ("heads", True)
    assert _status_target(["a1", "b2"], "head") == ("heads", True)


def test_status_target_explicit_with_several_heads_is_not_ambiguous() -> None:
    assert _status_target(["a1", "b2"], "alpha@head") == ("alpha@head", False)
    assert _status_target(["a1", "b2"], "heads") == ("heads", False)


def test_mark_interrupted_only_running_rows() -> None:
    runs = [{"outcome": RUNNING}, {"outcome": SUCCEEDED}, {"outcome": FAILED}]
    last_change = {"outcome": RUNNING}
    _mark_interrupted([*runs, last_change, None])
    assert [run["outcome"] for run in runs] == [INTERRUPTED, SUCCEEDED, FAILED]
    assert last_change["outcome"] == INTERRUPTED


# -- _review_downgrade: floors and refusals (revision files read with ast) ------------------------
def _downgrade_steps(run: AlembicRun) -> list[Step]:
    return planned(run, "downgrade", HISTORY[1], [HISTORY[-1]])  # e, d, c


def test_review_downgrade_classifies_each_step(equities: AlembicRun) -> None:
    result: dict[str, Any] = {}
    planned_steps = _review_downgrade(frozenset(), None, _downgrade_steps(equities), result)
    assert [entry["revision"] for entry in planned_steps] == [HISTORY[4], HISTORY[3], HISTORY[2]]
    assert all(entry["reversibility"] in ("reversible", "lossy", "irreversible", "unknown") for entry in planned_steps)
    assert result["pending"] == planned_steps


@pytest.mark.parametrize("floor", [HISTORY[3], HISTORY[3][:6], "zzzz, " + HISTORY[2]])
def test_review_downgrade_refuses_to_go_below_the_floor(equities: AlembicRun, floor: str) -> None:
    with pytest.raises(FleetError, match="below the allowed floor"):
        _review_downgrade(frozenset(), floor, _downgrade_steps(equities), {"target": HISTORY[1]})


def test_review_downgrade_allows_a_floor_it_does_not_cross(equities: AlembicRun) -> None:
    _review_downgrade(frozenset(), HISTORY[1], _downgrade_steps(equities), {})


def test_review_downgrade_refuses_what_policy_refuses(equities: AlembicRun) -> None:
    result: dict[str, Any] = {}
    kinds = {entry["reversibility"] for entry in _review_downgrade(frozenset(), None, _downgrade_steps(equities), result)}
    with pytest.raises(FleetError, match="refusing to downgrade: "):
        _review_downgrade(frozenset(kinds), None, _downgrade_steps(equities), {})
    _review_downgrade(frozenset({"reversible", "lossy", "irreversible", "unknown"} - kinds), None, _downgrade_steps(equities), {})
