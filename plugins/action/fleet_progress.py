"""Progress of long steps: runs the task's module and, while it runs, shows one line every few seconds.

This file is the action plugin of every module whose steps may run long (db_backup, alembic_upgrade, db_restore,
db_restore_check, alembic_downgrade): plugins/action/<module>.py are symlinks to it, so the plugin applies to the
module of the same name by itself. It names a private progress file to the module through the environment
(FLEET_PROGRESS_FILE, see module_utils/fleet/core/progress.py, which writes it) and, every `fleet_progress_interval`
seconds (default 10) while the module runs, displays one plain line such as
`db1/equities: backup running 40 s, 1.2 GB dumped`. A module that ends sooner shows nothing and costs nothing more:
no extra module start, no sleep before its result (unlike async/poll, whose first check waits `poll` seconds).

Display is proxied from the worker process to the main one, so the lines appear under any stdout callback.
Only connections that run the module on this machine (local) get progress: the file is read here, beside the
module. Over SSH the file would have to live in the remote temp directory and be read through the connection
from a second thread, which Ansible's connection plugins are not made for; such hosts run without progress.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import ansible.constants as C
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

PROGRESS_ENV = "FLEET_PROGRESS_FILE"  # the same name as module_utils/fleet/core/progress.py's (modules cannot share code with plugins)
DEFAULT_INTERVAL = 10.0
LOCAL_CONNECTIONS = frozenset(("local", "ansible.builtin.local", "ansible.legacy.local"))
MACHINE_CALLBACKS = frozenset(("json", "jsonl"))
STEP_NAMES = {
    "db_backup": "backup",
    "alembic_upgrade": "upgrade",
    "alembic_downgrade": "downgrade",
    "db_restore": "restore",
    "db_restore_check": "restore drill",
}

display = Display()


def read_progress(path: str) -> dict[str, Any] | None:
    """The last progress the module wrote; None when there is none yet (or it cannot be read right now)."""
    try:
        with open(path) as handle:
            payload = json.load(handle)
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def progress_line(label: str, elapsed: float, payload: dict[str, Any] | None, fallback_step: str, now: float | None = None) -> str:
    """One plain line, e.g. 'db1/equities: backup running 40 s, 1.2 GB dumped'.

    The elapsed time is the step's own when the module says when it started (a backup then an upgrade in one module),
    else the task's.
    """
    step, detail = fallback_step, ""
    if payload is not None:
        step = " ".join(str(payload.get("step") or fallback_step).split())
        detail = " ".join(str(payload.get("detail") or "").split())
        started = payload.get("step_started")
        if isinstance(started, (int, float)) and not isinstance(started, bool) and started > 0:
            elapsed = max(0.0, (time.time() if now is None else now) - started)
    line = "%s: %s running %d s" % (label, step, round(elapsed))
    return "%s, %s" % (line, detail) if detail else line


def database_name(args: dict[str, Any]) -> str | None:
    """The database a task works on, as the inventory names it; from the URL's path (never its password) otherwise."""
    for value in (args.get("name"), _get(args, "backup", "name"), _get(args, "record", "name")):
        if isinstance(value, str) and value:
            return value
    url = args.get("url")
    if isinstance(url, str) and url:
        try:
            path = urlsplit(url).path
        except ValueError:
            return None
        name = os.path.basename(unquote(path).rstrip("/"))
        return name or None
    return None


def _get(args: dict[str, Any], option: str, key: str) -> Any:
    value = args.get(option)
    return value.get(key) if isinstance(value, dict) else None


def interval_of(value: Any) -> float:
    """fleet_progress_interval as seconds; 0 (or less) turns progress off; a value that is no number is the default."""
    if isinstance(value, bool):
        return DEFAULT_INTERVAL
    try:
        return float(value)
    except (TypeError, ValueError):
        return DEFAULT_INTERVAL


class Reporter:
    """A thread that displays a progress line every `interval` seconds until stopped.

    With `databases` (a call over several databases, alembic_upgrade's `databases`), the module writes one file per
    database, `<path>.<index>`, while that database is worked, and each tick shows one line per database at work,
    labelled `<host>/<its name>`; a database not yet started or done shows nothing."""

    def __init__(self, label: str, step: str, path: str, interval: float, emit: Callable[[str], Any] | None = None, databases: list[str] | None = None) -> None:
        self.label, self.step, self.path, self.interval = label, step, path, interval
        self.databases = databases
        self._emit = emit or display.display
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-progress", daemon=True)
        self._started = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        ticks = 1
        # Due times are counted from the start, so the lines do not drift apart by the time each one takes.
        while not self._stop.wait(max(0.0, self._started + ticks * self.interval - time.monotonic())):
            elapsed = time.monotonic() - self._started
            if self.databases is None:
                self._emit(progress_line(self.label, elapsed, read_progress(self.path), self.step))
            else:
                for index, name in enumerate(self.databases):
                    payload = read_progress("%s.%d" % (self.path, index))
                    if payload is not None:
                        self._emit(progress_line("%s/%s" % (self.label, name), elapsed, payload, self.step))
            ticks = int(elapsed // self.interval) + 1


def _emitter() -> Callable[[str], Any]:
    """display.display; to stderr when stdout is a document for machines (the json callbacks), which a line would spoil."""
    callback = str(C.config.get_config_value("DEFAULT_STDOUT_CALLBACK") or "")
    if callback.rsplit(".", 1)[-1] in MACHINE_CALLBACKS:
        return lambda line: display.display(line, stderr=True)
    return lambda line: display.display(line)


class ActionModule(ActionBase):  # type: ignore[misc]
    _supports_check_mode = True
    _supports_async = True
    _fleet_progress_path: str | None = None  # set while a module that reports progress runs

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        wrap_async = bool(self._task.async_val and not self._connection.has_native_async)
        reporter = self._reporter(task_vars, wrap_async)
        try:
            if reporter is not None:
                reporter.start()
            result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        finally:
            if reporter is not None:
                reporter.stop()
                shutil.rmtree(os.path.dirname(reporter.path), ignore_errors=True)
            self._fleet_progress_path = None
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _reporter(self, task_vars: dict[str, Any], wrap_async: bool) -> Reporter | None:
        """The progress reporter of this run, None when there is none to show (check mode writes nothing)."""
        self._fleet_progress_path = None
        if self._task.check_mode or self._play_context.check_mode or wrap_async:
            return None
        if self._connection.transport not in LOCAL_CONNECTIONS and self._play_context.connection not in LOCAL_CONNECTIONS:
            return None
        interval = interval_of(self._templar.template(task_vars.get("fleet_progress_interval", DEFAULT_INTERVAL)))
        if interval <= 0:
            return None
        directory = tempfile.mkdtemp(prefix="fleet-progress-")  # 0700: only this user reads what the module writes
        path = os.path.join(directory, "progress.json")
        self._fleet_progress_path = path
        action = self._task.action.rsplit(".", 1)[-1]
        host = str(task_vars.get("inventory_hostname") or "localhost")
        databases = self._task.args.get("databases")
        if isinstance(databases, list):
            names = [str(entry.get("name") or index) if isinstance(entry, dict) else str(index) for index, entry in enumerate(databases)]
            return Reporter(host, STEP_NAMES.get(action, action), path, interval, _emitter(), databases=names)
        name = database_name(self._task.args)
        label = "%s/%s" % (host, name) if name else host
        return Reporter(label, STEP_NAMES.get(action, action), path, interval, _emitter())

    def _compute_environment_string(self, raw_environment_out: dict[str, Any] | None = None) -> str:
        environment: dict[str, Any] = {} if raw_environment_out is None else raw_environment_out
        super()._compute_environment_string(environment)
        if self._fleet_progress_path:
            environment[PROGRESS_ENV] = self._fleet_progress_path
        return str(self._connection._shell.env_prefix(**environment))
