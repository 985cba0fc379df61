"""core/forked.run_forked: work items in forked children, a bounded number at a time, each result through a pipe; a
child that ends without a result is its item's failure, and the others still come back."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from ansible.module_utils.fleet.core.forked import run_forked


def work(item: tuple[str, float]) -> dict[str, Any]:
    name, seconds = item
    if name == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    if name == "raises":
        raise RuntimeError("a bug")
    started = time.time()
    time.sleep(seconds)
    return {"name": name, "pid": os.getpid(), "started": started, "ended": time.time(), "big": "x" * 200_000 if name == "big" else ""}


def lost(item: tuple[str, float], how: str) -> dict[str, Any]:
    return {"name": item[0], "lost": how}


def test_results_come_back_in_order_each_from_its_own_process_and_a_lost_child_is_its_items_failure() -> None:
    items = [("a", 0.3), ("killed", 0), ("big", 0.0), ("raises", 0), ("b", 0.1)]
    results = run_forked(work, items, 2, lost)
    assert [result["name"] for result in results] == ["a", "killed", "big", "raises", "b"]
    assert results[1] == {"name": "killed", "lost": "killed by signal 9"}
    assert results[3] == {"name": "raises", "lost": "exited with status 1"}
    assert len(results[2]["big"]) == 200_000  # more than a pipe holds: read while the child writes
    pids = {results[i]["pid"] for i in (0, 2, 4)}
    assert len(pids) == 3 and os.getpid() not in pids


def test_no_more_than_the_given_number_run_at_once() -> None:
    results = run_forked(work, [("one", 0.4), ("two", 0.4), ("three", 0.4)], 2, lost)
    spans = sorted((r["started"], r["ended"]) for r in results)
    assert spans[2][0] >= min(spans[0][1], spans[1][1]) - 0.05, spans  # the third starts when one of the first two is done
    assert spans[1][0] < spans[0][1], spans  # the first two overlap
