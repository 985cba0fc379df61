"""Progress of long steps: the module's writer (module_utils/fleet/core/progress.py), the action plugin's reader and its
timer (plugins/action/fleet_progress.py), and what pg_restore's and Alembic's steps turn into."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from ansible.module_utils.fleet.alembic.run import _step_progress
from ansible.module_utils.fleet.backup.restore import _VERBOSE_ONLY, _RestoreCounter
from ansible.module_utils.fleet.core.progress import PROGRESS_ENV, Progress, from_environment, human_bytes

REPO = Path(__file__).resolve().parents[5]


def load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fleet_progress_action", REPO / "plugins" / "action" / "fleet_progress.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = load_plugin()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_step_is_written_at_once_privately_and_updates_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    clock = Clock()
    progress = Progress(str(path), clock=clock)
    progress.step("backup", "connecting")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = json.loads(path.read_text())
    assert (first["step"], first["detail"]) == ("backup", "connecting")
    assert abs(first["step_started"] - time.time()) < 5

    progress.update("1.0 MB dumped", bytes=10**6)
    assert json.loads(path.read_text())["detail"] == "connecting"  # within the second: not rewritten
    clock.now += 1.0
    progress.update("2.0 MB dumped", bytes=2 * 10**6)
    assert json.loads(path.read_text())["bytes"] == 2 * 10**6
    progress.update("verifying", force=True)
    assert json.loads(path.read_text())["detail"] == "verifying"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.json"]  # no temp file left behind


def test_without_a_path_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    progress = from_environment()
    assert not progress.enabled
    progress.step("backup", "x")
    progress.update("y", force=True)
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "missing-dir" / "progress.json"))
    assert not from_environment().enabled  # a directory that is gone: nothing to write into
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "progress.json"))
    assert from_environment().enabled
    assert list(tmp_path.iterdir()) == []


def test_a_failing_write_does_not_fail_the_step(tmp_path: Path) -> None:
    directory = tmp_path / "gone"
    directory.mkdir()
    progress = Progress(str(directory / "progress.json"))
    directory.rmdir()
    progress.step("backup", "still fine")  # no exception


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 999, 1000, 1_234_567, 1_200_000_000, 5 * 10**15)] == ["0 B", "999 B", "1.0 kB", "1.2 MB", "1.2 GB", "5000.0 TB"]


def test_the_line_names_the_database_the_step_its_own_elapsed_time_and_what_it_does() -> None:
    payload = {"step": "backup", "step_started": 1000.0, "detail": "1.2 GB\n dumped"}
    assert plugin.progress_line("db1/equities", 55.0, payload, "upgrade", now=1040.4) == "db1/equities: backup running 40 s, 1.2 GB dumped"
    assert plugin.progress_line("db1/equities", 12.4, None, "upgrade") == "db1/equities: upgrade running 12 s"
    assert plugin.progress_line("db1", 9.6, {"detail": ""}, "restore") == "db1: restore running 10 s"


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ({"name": "equities", "url": "postgresql://u:secret@h/x"}, "equities"),
        ({"backup": {"name": "algorithms"}, "url": "postgresql://u:secret@h/x"}, "algorithms"),
        ({"record": {"name": "ledger"}}, "ledger"),
        ({"url": "postgresql://u:secret@h:5432/trades?sslmode=require"}, "trades"),
        ({"url": "sqlite:////var/lib/app/app%20db.sqlite3"}, "app db.sqlite3"),
        ({}, None),
    ],
)
def test_the_database_comes_from_the_arguments_never_with_the_password(args: dict[str, Any], name: str | None) -> None:
    assert plugin.database_name(args) == name


def test_the_interval_setting() -> None:
    assert plugin.DEFAULT_INTERVAL == 10  # "at least every 10 s" unless told otherwise
    assert plugin.interval_of("2.5") == 2.5
    assert plugin.interval_of(0) == 0
    assert plugin.interval_of("soon") == plugin.DEFAULT_INTERVAL
    assert plugin.interval_of(True) == plugin.DEFAULT_INTERVAL


def test_the_reporter_shows_a_line_every_interval_and_nothing_for_a_short_step(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    seen: list[tuple[float, str]] = []
    lock = threading.Lock()

    def emit(line: str) -> None:
        with lock:
            seen.append((time.monotonic(), line))

    short = plugin.Reporter("db1/equities", "backup", str(path), 0.3, emit)
    started = time.monotonic()
    short.start()
    short.stop()
    assert seen == [] and time.monotonic() - started < 0.2  # stopping does not wait for the interval

    Progress(str(path)).step("backup", "4.0 MB dumped")
    reporter = plugin.Reporter("db1/equities", "backup", str(path), 0.3, emit)
    started = time.monotonic()
    reporter.start()
    time.sleep(1.05)
    reporter.stop()
    with lock:
        moments = [at - started for at, _ in seen]
        lines = [line for _, line in seen]
    assert len(lines) == 3, lines
    assert all(line.startswith("db1/equities: backup running ") and line.endswith(", 4.0 MB dumped") for line in lines), lines
    for number, moment in enumerate(moments, 1):
        assert abs(moment - 0.3 * number) < 0.15, moments


def test_a_call_over_several_databases_shows_one_line_per_database_at_work(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    seen: list[str] = []
    Progress("%s.0" % path).step("backup", "9.0 MB dumped")  # equities at work; algorithms (1) not started or done
    Progress("%s.2" % path).step("upgrade", "revision 3 of 7")
    reporter = plugin.Reporter("db1", "upgrade", str(path), 0.3, seen.append, databases=["equities", "algorithms", "ledger"])
    reporter.start()
    time.sleep(0.45)
    reporter.stop()
    assert [line.split(" running ")[0] for line in seen] == ["db1/equities: backup", "db1/ledger: upgrade"], seen
    assert seen[0].endswith(", 9.0 MB dumped") and seen[1].endswith(", revision 3 of 7"), seen


def test_pg_restore_verbose_lines_become_progress_and_stay_out_of_errors(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    counter = _RestoreCounter(Progress(str(path)), total=4)
    counter.progress.step("restore")
    counter.line('pg_restore: creating TABLE "public.trades"')
    counter.line("pg_restore: error: could not execute query: ERROR: boom")
    counter.line('pg_restore: processing data for table "public.trades"')
    assert json.loads(path.read_text())["detail"] == "restoring the data of table public.trades (entry 2 of 4)"
    assert _VERBOSE_ONLY.match('pg_restore: creating TABLE "public.trades"')
    assert _VERBOSE_ONLY.match("pg_restore: connecting to database for restore")
    assert not _VERBOSE_ONLY.match("pg_restore: error: could not execute query: ERROR: boom")
    assert not _VERBOSE_ONLY.match("pg_restore: from TOC entry 215; 1259 16386 TABLE trades app")
    assert not _VERBOSE_ONLY.match("Command was: CREATE TABLE public.trades ();")


def test_the_revision_being_applied() -> None:
    step = SimpleNamespace(revision=SimpleNamespace(revision="3f2a9c1e", doc="add an index\n on trades"))
    assert _step_progress("applying", step, 2) == "applying 3f2a9c1e (add an index on trades), 2 more after it"
    assert _step_progress("undoing", SimpleNamespace(revision=SimpleNamespace(revision="ab12", doc=None)), 0) == "undoing ab12"


def test_module_utils_and_plugin_agree_on_the_variable() -> None:
    assert plugin.PROGRESS_ENV == PROGRESS_ENV == "FLEET_PROGRESS_FILE"
    assert os.path.islink(REPO / "plugins" / "action" / "db_backup.py")
    for module in ("db_backup", "alembic_upgrade", "alembic_downgrade", "db_restore", "db_restore_check"):
        link = REPO / "plugins" / "action" / ("%s.py" % module)
        assert link.resolve() == (REPO / "plugins" / "action" / "fleet_progress.py").resolve(), module
        assert (REPO / "library" / ("%s.py" % module)).is_file(), module
