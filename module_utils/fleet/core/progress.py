# -*- coding: utf-8 -*-
# Progress of a long step (pg_dump, pg_restore, an upgrade), for the action plugin of the module to show while the
# module runs (plugins/action/fleet_progress.py). The action plugin names a file through the environment variable
# FLEET_PROGRESS_FILE; the module rewrites it atomically (0600, write-then-rename) with what it is doing. The
# variable reaches every step of a module (alembic_upgrade's backup too) without an option on each of them; without
# it (a module run ad hoc, check mode) reporting costs nothing and writes nothing. The file never holds a secret:
# only a step name, a plain description and counters.
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

PROGRESS_ENV = "FLEET_PROGRESS_FILE"
MIN_WRITE_INTERVAL = 1.0  # seconds between two rewrites of the same step: the reader looks every few seconds


def human_bytes(size: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as df -H and pg_size_pretty's peers print them)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1000
    return "%d B" % size  # not reached


class Progress:
    """Writes the progress file; a Progress without a path (no reader asked for one) does nothing."""

    def __init__(self, path: str | None, clock: Any = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._step: str | None = None
        self._step_started = 0.0
        self._last_write = float("-inf")

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def step(self, name: str, detail: str = "", **facts: Any) -> None:
        """A new step starts (always written): its elapsed time counts from now."""
        self._step = name
        self._step_started = time.time()
        self._write(detail, facts)

    def update(self, detail: str, force: bool = False, **facts: Any) -> None:
        """What the current step is doing now; written at most once per MIN_WRITE_INTERVAL unless forced."""
        if self.path is None:
            return
        if not force and self._clock() - self._last_write < MIN_WRITE_INTERVAL:
            return
        self._write(detail, facts)

    def _write(self, detail: str, facts: dict[str, Any]) -> None:
        if self.path is None:
            return
        payload = {"step": self._step or "", "step_started": self._step_started, "detail": detail, "updated": time.time(), **facts}
        self._last_write = self._clock()
        try:
            _write_atomically(self.path, payload)
        except OSError:
            pass  # progress is a courtesy: a full disk or a removed directory must not fail the step it describes


def _write_atomically(path: str, payload: dict[str, Any]) -> None:
    directory = os.path.dirname(path) or "."
    fd, temp_path = tempfile.mkstemp(prefix=".progress.", suffix=".partial", dir=directory)  # mkstemp: 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, sort_keys=True)
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise


def from_environment() -> Progress:
    """The Progress the action plugin asked for, or one that does nothing."""
    path = os.environ.get(PROGRESS_ENV) or None
    if path is not None and not os.path.isdir(os.path.dirname(path) or "."):
        path = None
    return Progress(path)
