"""The benchmark runs from the repository with its one command and prints its table.

Not a measurement (the figures of a few-MB database mean nothing, and timed tests are not our way): this shows that
`bench/run` starts its own clusters, measures each chosen section against its peer and writes its JSON, so the
README's Performance figures can be reproduced from a fresh clone. The sections chosen read the modules' own
timings (`manifest.pg_dump_seconds`, `pg_restore_seconds`) and check that plain `pg_restore` restores our backup.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from support.ansible_run import REPO

pytestmark = pytest.mark.slow

SECTIONS = ("backup", "restore")  # the fleet sections take minutes even on a tiny seed; they run the same playbooks the suite tests


def test_bench_run_prints_the_table_and_writes_its_results() -> None:
    before = set((REPO / "bench" / "results").glob("*.json"))
    done = subprocess.run(
        [str(REPO / "bench" / "run"), "--size-mb", "4", "--repeat", "1", "--only", ",".join(SECTIONS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    written = sorted(set((REPO / "bench" / "results").glob("*.json")) - before)
    try:
        assert done.returncode == 0, out[-4000:]
        for section in SECTIONS:
            assert re.search(r"^== %s$" % re.escape(section), out, re.M), out[-4000:]
        assert re.search(r"^targets met: \d+ of \d+; results: bench/results/\S+\.json$", out, re.M), out[-2000:]
        assert len(written) == 1, written
        data = json.loads(written[0].read_text())
        assert data["errors"] == {}, data["errors"]
        cases = {row["section"]: [] for row in data["rows"]}
        for row in data["rows"]:
            cases[row["section"]].append(row["case"])
            assert row["ours"]["samples"] and row["peer"]["samples"], row
        assert set(cases) == set(SECTIONS), cases
        assert "module duration vs its own pg_dump, same run (checksum + verification on top)" in cases["backup"]
        assert "module duration vs its own pg_restore, same run (our work on top)" in cases["restore"]
        assert data["facts"]["backup"]["plain_pg_restore"]["ok"] is True, data["facts"]
    finally:
        for path in written:
            path.unlink()
