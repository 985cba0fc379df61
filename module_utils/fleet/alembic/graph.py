# -*- coding: utf-8 -*-
# The revision graph of a project with branches: which revisions lie between
# the heads a database is at and the exact set of heads it should end at, in
# the order Alembic must run them. Alembic's own walk answers "downgrade to X"
# with nothing when X is one of several heads, and "+1" at a branch point with
# "Ambiguous walk"; a run that must undo exactly what it added (recovery,
# rollback.yml) or say where "+1" could go needs the graph itself.
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

try:
    from alembic.runtime.migration import MigrationStep
except ImportError:  # pragma: no cover - reported by the module
    pass


def _downs(script: Any) -> tuple[str, ...]:
    down = script.down_revision
    if down is None:
        return ()
    return (down,) if isinstance(down, str) else tuple(down)


def _requires(script: Any) -> tuple[str, ...]:
    """What a revision needs below it: its down revisions and its depends_on (both must be applied first)."""
    needs = list(_downs(script))
    for dependency in getattr(script, "_resolved_dependencies", None) or ():
        if dependency not in needs:
            needs.append(dependency)
    return tuple(needs)


def closure(script_directory: Any, heads: Iterable[str]) -> set[str]:
    """Every revision applied when a database is at `heads`: the heads and all they need, transitively."""
    revision_map = script_directory.revision_map
    found: set[str] = set()
    todo = [head for head in heads if head]
    while todo:
        revision = todo.pop()
        if revision in found:
            continue
        found.add(revision)
        todo.extend(_requires(revision_map.get_revision(revision)))
    return found


def _ordered(script_directory: Any, revisions: set[str]) -> list[Any]:
    """`revisions` with each one after everything it needs (parents first); ties by id, so the order is stable."""
    revision_map = script_directory.revision_map
    scripts = {revision: revision_map.get_revision(revision) for revision in revisions}
    done: list[Any] = []
    placed: set[str] = set()
    while len(placed) < len(scripts):
        ready = sorted(rev for rev, script in scripts.items() if rev not in placed and all(need in placed or need not in scripts for need in _requires(script)))
        if not ready:  # pragma: no cover - a cycle; Alembic refuses to load such a project
            raise ValueError("the revisions %s depend on each other in a cycle" % ", ".join(sorted(set(scripts) - placed)))
        for rev in ready:
            placed.add(rev)
            done.append(scripts[rev])
    return done


def steps_between(script_directory: Any, current: Sequence[str], wanted: Sequence[str], direction: str) -> list[Any]:
    """Alembic migration steps that take a database from heads `current` to exactly heads `wanted`.

    upgrade: the revisions `wanted` needs that are not applied, parents first; downgrade: the applied revisions
    that `wanted` does not need, children first. The other direction's revisions must be empty: the caller
    checks with `unreachable` first.
    """
    have = closure(script_directory, current)
    need = closure(script_directory, wanted)
    revision_map = script_directory.revision_map
    if direction == "upgrade":
        return [MigrationStep.upgrade_from_script(revision_map, script) for script in _ordered(script_directory, need - have)]
    return [MigrationStep.downgrade_from_script(revision_map, script) for script in reversed(_ordered(script_directory, have - need))]


def unreachable(script_directory: Any, current: Sequence[str], wanted: Sequence[str], direction: str) -> list[str]:
    """The revisions that moving in `direction` cannot handle: applied ones an upgrade would have to remove, or
    missing ones a downgrade would have to add (sorted)."""
    have = closure(script_directory, current)
    need = closure(script_directory, wanted)
    return sorted(have - need) if direction == "upgrade" else sorted(need - have)


def next_revisions(script_directory: Any, current: Sequence[str]) -> list[str]:
    """The revisions one step above the current heads (the candidates of an ambiguous "+1")."""
    have = closure(script_directory, current)
    found = []
    for script in script_directory.walk_revisions():
        if script.revision not in have and all(need in have for need in _requires(script)):
            found.append(script.revision)
    return sorted(found)


def describe(script_directory: Any, revision: str) -> str:
    """`id (branch label, "message")` for a message naming a candidate."""
    script = script_directory.revision_map.get_revision(revision)
    labels = sorted(getattr(script, "branch_labels", None) or ())
    message = (script.doc or "").strip().splitlines()[0].strip() if (script.doc or "").strip() else ""
    parts = ["branch %s" % ", ".join(labels)] if labels else []
    if message:
        parts.append('"%s"' % message)
    return "%s (%s)" % (revision, "; ".join(parts)) if parts else revision
