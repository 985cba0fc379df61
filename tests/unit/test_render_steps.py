"""The review renders a plan's SQL in one offline pass and cuts it per revision: the pieces must be exactly what
rendering each revision on its own gives (squawk's findings and line numbers depend on it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.module_utils import fleet_ops

from support.ansible_run import REPO

PROJECTS = [
    REPO / "migrations" / "equities" / "alembic.ini",
    REPO / "migrations" / "algorithms" / "alembic.ini",
    REPO / "tests" / "fixtures" / "hazards" / "alembic.ini",
]


@pytest.mark.parametrize("url", ["postgresql://migrator@127.0.0.1:1/offline", "sqlite:////nonexistent/offline.db"])
@pytest.mark.parametrize("ini", PROJECTS, ids=lambda p: p.parent.name)
def test_one_pass_equals_rendering_each_revision_alone(ini: Path, url: str) -> None:
    run = fleet_ops._open({"config": str(ini), "url": url, "password": None})
    steps = run.plan("upgrade", run.parse("head", "upgrade"), [])
    assert len(steps) > 1
    alone = [run.render_sql("upgrade", run.parse(step.revision, "upgrade"), list(step.down_revision)) for step in steps]
    assert run.render_steps_sql(steps) == alone
    # From a revision in the middle, too.
    rest = steps[2:]
    alone_rest = alone[2:]
    assert run.render_steps_sql(rest) == alone_rest
