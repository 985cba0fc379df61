# -*- coding: utf-8 -*-
# Work items in forked processes, a bounded number at a time, each result back through a pipe (alembic_upgrade's
# `databases` with `parallel`: Alembic's `op` and `context` are process-wide, so databases cannot share a process).
#
# Not multiprocessing.Pool: a Pool whose worker is killed (the OOM killer, an operator's kill -9) never returns the
# lost item's result and waits forever; here a child that ends without a result is that item's failure, and the
# others go on. Each child dies with its parent (Linux's PR_SET_PDEATHSIG): a killed module takes its workers with it,
# so no database goes on migrating behind the caller's back.
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def run_forked(work: Callable[[T], dict[str, Any]], items: Sequence[T], workers: int, lost: Callable[[T, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """work(item) for each item, up to `workers` children at a time; the results in the items' order.

    `work` returns a JSON-serialisable dict and never raises (a child that raises is lost too). `lost(item, how)`
    is the result of an item whose child ended without one ("killed by signal 9", "exited with status 1")."""
    results: list[dict[str, Any] | None] = [None] * len(items)
    waiting = list(range(len(items)))
    running: dict[int, tuple[int, int, bytearray]] = {}  # read end -> (pid, index, what was read)
    parent = os.getpid()
    while waiting or running:
        while waiting and len(running) < max(1, workers):
            index = waiting.pop(0)
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                os.close(read)
                _child(parent, write, work, items[index])
            os.close(write)
            running[read] = (pid, index, bytearray())
        ready, _, _ = select.select(list(running), [], [])
        for read in ready:
            pid, index, data = running[read]
            chunk = os.read(read, 1 << 16)
            if chunk:
                data.extend(chunk)
                continue
            os.close(read)
            del running[read]
            _, status = os.waitpid(pid, 0)
            results[index] = _result(bytes(data), status) or lost(items[index], _how(status))
    return [result for result in results if result is not None]


def _child(parent: int, write: int, work: Callable[[T], dict[str, Any]], item: T) -> None:
    code = 1
    try:
        die_with_parent(parent)
        payload = json.dumps(work(item), default=str).encode()
        view = memoryview(payload)
        while view:
            view = view[os.write(write, view) :]
        code = 0
    finally:
        os._exit(code)  # no atexit handler of the module (its temporary files are the parent's)


def die_with_parent(parent: int) -> None:
    """This process gets SIGKILL when its parent ends; it exits at once if the parent is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: a child outlives a killed parent, as without this
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _result(data: bytes, status: int) -> dict[str, Any] | None:
    if not data or os.waitstatus_to_exitcode(status) != 0:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _how(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return "killed by signal %d" % -code
    return "exited with status %d" % code
