"""The review of a plan, kept (module_utils/fleet/review/cache.py): the second review of the same files is read
back, the environment's policy is still applied to it, and any change to what the review depends on is a new
review. No database: offline rendering and squawk only, on a copy of the forked fixture history (a branch point,
two branches, a merge, data migrations through op.get_bind())."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.fleet.alembic.run import AlembicRun, open_run
from ansible.module_utils.fleet.review import cache as review_cache
from ansible.module_utils.fleet.review.cache import ReviewCache
from ansible.module_utils.fleet.review.lint import Review, ReviewPolicy, review_steps
from support.ansible_run import REPO

FORKED = REPO / "tests" / "fixtures" / "histories" / "forked"
URL = "postgresql://migrator@127.0.0.1:1/offline"


@pytest.fixture(autouse=True)
def no_memory() -> None:
    review_cache._MEMORY.clear()  # each test starts with nothing kept in this process


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(FORKED, tmp_path / "forked", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "forked" / "alembic.ini"


def review(ini: Path, cache: ReviewCache | None, fresh: bool = False, policy: ReviewPolicy | None = None, url: str = URL) -> tuple[Review, AlembicRun]:
    run = open_run({"config": str(ini), "url": url, "password": None})
    steps = run.plan("upgrade", run.parse("heads", "upgrade"), [])
    return review_steps(run, steps, policy or ReviewPolicy({}, True, {}, False), "15", fresh=fresh, cache=cache), run


def plain(result: Review) -> Any:
    return json.loads(json.dumps([result.revisions, result.findings, result.blocking, result.block_message], sort_keys=True, default=str))


def test_the_second_review_of_the_same_files_is_read_back_and_equals_a_review_without_cache(project: Path, tmp_path: Path) -> None:
    without, _ = review(project, None)
    cache = ReviewCache(str(tmp_path / "cache"))
    first, _ = review(project, cache)
    assert cache.stats()["misses"] == 1 and cache.stats()["hits"] == 0
    review_cache._MEMORY.clear()  # another run (another process): only the directory is left
    second, _ = review(project, ReviewCache(str(tmp_path / "cache")))
    assert plain(without) == plain(first) == plain(second)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1


def test_the_policy_of_each_environment_is_applied_to_what_is_read_back(project: Path, tmp_path: Path) -> None:
    cache = ReviewCache(str(tmp_path / "cache"))
    dev, _ = review(project, cache)
    rules = {f["rule"]: "error" for _, f in dev.findings if f["severity"] != "error"}
    assert rules, "the fixture has warnings"
    prod, _ = review(project, cache, policy=ReviewPolicy(rules, True, {}, False))
    assert cache.stats()["hits"] == 1
    assert prod.blocking and not dev.blocking
    assert plain(review(project, None, policy=ReviewPolicy(rules, True, {}, False))[0]) == plain(prod)


def test_a_changed_revision_or_helper_file_is_reviewed_again(project: Path, tmp_path: Path) -> None:
    cache = ReviewCache(str(tmp_path / "cache"))
    before, run = review(project, cache)
    versions = Path(run.script.dir) / "versions"
    target = next(versions.glob("*order_shipping.py"))
    target.write_text(target.read_text() + "\n\ndef _unused_helper() -> None:\n    op.drop_table('orders')\n")
    review(project, cache)
    assert cache.stats()["misses"] == 2
    (Path(run.script.dir) / "helpers.py").write_text("# a helper kept beside the revisions\n")
    review(project, cache)
    assert cache.stats()["misses"] == 3
    review(project, cache)
    assert cache.stats()["hits"] == 1 and before.revisions


def test_an_empty_database_another_dialect_or_server_version_is_another_review(project: Path, tmp_path: Path) -> None:
    cache = ReviewCache(str(tmp_path / "cache"))
    existing, _ = review(project, cache, fresh=False)
    fresh, _ = review(project, cache, fresh=True)
    assert cache.stats()["misses"] == 2
    assert plain(existing) != plain(fresh)  # a fresh install leaves out what needs an existing table
    run = open_run({"config": str(project), "url": URL, "password": None})
    steps = run.plan("upgrade", run.parse("heads", "upgrade"), [])
    assert cache.key(run, steps, "15", False, False, None) != cache.key(run, steps, "16", False, False, None)
    assert cache.key(run, steps, "15", False, False, None) != cache.key(run, steps, "15", False, True, None)


def test_a_cache_that_cannot_be_read_or_written_is_no_cache(project: Path, tmp_path: Path) -> None:
    cache = ReviewCache(str(tmp_path / "cache"))
    good, _ = review(project, cache)
    entry = next((tmp_path / "cache").glob("*.json"))
    entry.write_text("{not json")
    review_cache._MEMORY.clear()
    again, _ = review(project, cache)
    assert plain(again) == plain(good) and cache.stats()["misses"] == 2
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    review_cache._MEMORY.clear()
    unwritable, _ = review(project, ReviewCache(str(blocked / "cache")))
    assert plain(unwritable) == plain(good)
