# -*- coding: utf-8 -*-
# Alembic driven in-process: one AlembicRun per module invocation loads the
# project, opens a connection to the target, and runs the project's own env.py
# through EnvironmentContext for every step (probe, plan, SQL rendering,
# upgrade, downgrade, stamp, schema comparison). Alembic's output and logs are
# captured, never printed; the password stays in memory and in a private
# PGPASSFILE for env.py files that build their own engine.
from __future__ import annotations

import configparser
import contextlib
import functools
import io
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ansible.module_utils.fleet.alembic.graph import describe, next_revisions, steps_between, unreachable
from ansible.module_utils.fleet.alembic.revision import SYMBOLS, TargetSpec, parse_target_spec, resolve_prefix
from ansible.module_utils.fleet.alembic.source import uses_autocommit_block
from ansible.module_utils.fleet.core.common import (
    DECLARE_PACKAGES,
    DbTarget,
    FleetError,
    environment,
    private_passfile,
    scrub,
)
from ansible.module_utils.fleet.core.db import (
    DatabaseMissing,
    connect,
    create_database,
    create_engine,
    database_exists,
    error_detail,
)
from ansible.module_utils.fleet.core.options import Connection, LockOptions, Project, Timeouts
from ansible.module_utils.fleet.core.progress import Progress
from ansible.module_utils.fleet.core.progress import from_environment as progress_from_environment

ALEMBIC_IMPORT_ERROR: str | None
try:
    import sqlalchemy as sa
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.runtime.migration import MigrationStep
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
except ImportError:  # pragma: no cover - reported by the module
    ALEMBIC_IMPORT_ERROR = traceback.format_exc()
else:
    ALEMBIC_IMPORT_ERROR = None


@dataclass(frozen=True)
class AlembicProject:
    config_path: str
    project_dir: str
    ini_section: str = "alembic"


def load_project(config_path: str, project_dir: str | None = None, ini_section: str = "alembic") -> AlembicProject:
    """Check the alembic.ini before anything runs, with a fix for each problem."""
    if not (config_path or "").strip():
        raise FleetError("config is empty: give the path of the project's alembic.ini.")
    path = os.path.abspath(os.path.expanduser(config_path))
    if os.path.isdir(path):
        raise FleetError(
            "Alembic config %s is a directory, not a file: set config (alembic_ini) to the alembic.ini inside it (e.g. %s)."
            % (path, os.path.join(path, "alembic.ini"))
        )
    if not os.path.isfile(path):
        raise FleetError("Alembic config %s does not exist: set config (alembic_ini) to the path of the project's alembic.ini." % path)
    if not os.access(path, os.R_OK):
        raise FleetError("Alembic config %s is not readable: give the user running the module read access to it." % path)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise FleetError("Alembic config %s is not a valid ini file (%s): fix its syntax." % (path, " ".join(str(exc).split()))) from None
    if not parser.has_section(ini_section):
        raise FleetError("Alembic config %s has no [%s] section: set ini_section to the section that holds script_location." % (path, ini_section))
    if not parser.has_option(ini_section, "script_location"):
        raise FleetError("Alembic config %s has no script_location in [%s]: add it (e.g. script_location = %%(here)s)." % (path, ini_section))
    root = os.path.abspath(os.path.expanduser(project_dir)) if project_dir else os.path.dirname(path)
    if not os.path.isdir(root):
        raise FleetError("project_dir %s does not exist: set it to the directory the project's relative paths start from." % root)
    return AlembicProject(config_path=path, project_dir=root, ini_section=ini_section)


@dataclass
class Probe:
    """What the database holds, read without changing anything."""

    exists: bool
    current: tuple[str, ...] = ()
    versioned: bool = False
    metadata_available: bool = False
    diffs: list[str] | None = None
    server_version: str | None = None
    metadata_note: str | None = None  # why there are no models to compare with


@dataclass
class Step:
    revision: str
    down_revision: tuple[str, ...]
    message: str
    path: str
    direction: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "down_revision": list(self.down_revision),
            "message": self.message,
            "file": os.path.basename(self.path),
            "direction": self.direction,
        }


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def _reads_database(path: str) -> bool:
    """Whether a revision file queries through op.get_bind() (offline, that bind is a mock that returns nothing)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return "get_bind(" in handle.read()
    except OSError:
        return False


def _step_from(step: Any) -> Step:
    script = step.revision
    down = script.down_revision
    if down is None:
        downs: tuple[str, ...] = ()
    elif isinstance(down, str):
        downs = (down,)
    else:
        downs = tuple(down)
    return Step(
        revision=script.revision,
        down_revision=downs,
        message=_first_line(script.doc),
        path=script.path,
        direction="upgrade" if step.is_upgrade else "downgrade",
    )


def _may_lie_behind(spec: TargetSpec) -> bool:
    """Whether an upgrade target that plans nothing may name a revision below the current one (head and heads
    themselves never do; +N is refused earlier when it runs out)."""
    if spec.ref is None or spec.ref == "heads":
        return False
    return spec.ref != "head" or spec.offset < 0


def exact_heads(spec: TargetSpec, direction: str) -> tuple[str, ...] | None:
    """The exact heads a target means, or None where Alembic's own walk applies.

    A downgrade to a revision id means "end at exactly that revision": Alembic's walk does nothing when the
    database holds several heads and the target is one of them, which left a run on another branch impossible to
    undo. A list of ids means exactly those heads in either direction.
    """
    if spec.revisions:
        return spec.revisions
    if direction == "downgrade" and spec.ref is not None and spec.ref not in SYMBOLS and not spec.branch and not spec.offset:
        return (spec.ref,)
    return None


def explain_revision_error(exc: BaseException, spec: TargetSpec, current: Sequence[str], heads: Sequence[str], direction: str = "") -> FleetError:
    """Turn Alembic's revision errors into one sentence with the next step (for that direction, when given)."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    now = ", ".join(current) or "base (empty)"
    if "multiple head" in lowered:
        return FleetError(
            "the project has %d heads (%s) and target '%s' is ambiguous: merge them (alembic merge heads) or name one (<branch>@head, a revision id, or heads)."
            % (len(heads), ", ".join(heads), spec.given)
        )
    if "not a valid upgrade target" in lowered or ("not an ancestor" in lowered and "upgrade" in lowered):
        return FleetError(
            "target '%s' cannot be reached by upgrading from the current revision %s (it is behind it or on another branch): "
            "choose a later revision, or use the downgrade module to go back." % (spec.given, now)
        )
    if "not a valid downgrade target" in lowered or "not an ancestor" in lowered:
        return FleetError(
            "target '%s' cannot be reached by downgrading from the current revision %s (it is ahead of it or on another branch): "
            "choose an earlier revision, or use the upgrade module." % (spec.given, now)
        )
    if isinstance(exc, AssertionError) or "relative revision" in lowered or "walked too far" in lowered or "didn't produce" in lowered:
        fix = _past_the_end_fix(spec, direction)
        return FleetError("target '%s' goes past the end of the history from the current revision %s: %s" % (spec.given, now, fix))
    if "can't locate revision" in lowered or "no such revision" in lowered or "no such branch" in lowered:
        return FleetError("unknown revision in target '%s' (%s): run the status module to list the project's revisions." % (spec.given, text))
    return FleetError("Alembic cannot plan target '%s' from %s: %s" % (spec.given, now, text))


def _past_the_end_fix(spec: TargetSpec, direction: str) -> str:
    # An upgrade never goes to base: suggesting it there would send the operator to another refusal.
    if direction == "upgrade" and spec.offset < 0:
        return "it lies below base, and an upgrade only goes up; use the downgrade module (or rollback.yml) to go back, or upgrade to head."
    if direction == "upgrade":
        return "use a smaller step, or head."
    if direction == "downgrade":
        return "use a smaller step, or base."
    return "use a smaller step, head, or base."


class AlembicRun:
    """Everything one module invocation does with one project and one database."""

    def __init__(self, project: AlembicProject, target: DbTarget) -> None:
        self.project = project
        self.target = target
        self.output = io.StringIO()
        self.session_settings: dict[str, str] = {}  # PostgreSQL SETs for migration connections
        self._engine: Any = None
        self._script: ScriptDirectory | None = None
        self._shared_scripts: dict[tuple[str, str, str], ScriptDirectory] | None = None  # see share_scripts
        self.progress: Progress = progress_from_environment()  # the revision being applied, for the action plugin

    # -- lifecycle -----------------------------------------------------
    @contextlib.contextmanager
    def session(self) -> Iterator[AlembicRun]:
        cwd = os.getcwd()
        saved_path = list(sys.path)
        with private_passfile(self.target.password if self.target.dialect == "postgresql" else None) as passfile:
            overrides: dict[str, str | None] = {"DATABASE_URL": self.target.url}
            if passfile:
                overrides["PGPASSFILE"] = passfile
            try:
                os.chdir(self.project.project_dir)
                sys.path.insert(0, self.project.project_dir)
                with environment(overrides), contextlib.redirect_stdout(self.output), contextlib.redirect_stderr(self.output):
                    yield self
            finally:
                if self._engine is not None:
                    self._engine.dispose()
                    self._engine = None
                sys.path[:] = saved_path  # env.py and prepend_sys_path add entries too
                os.chdir(cwd)

    def log_lines(self) -> list[str]:
        lines = [line.rstrip() for line in self.output.getvalue().splitlines() if line.strip()]
        return [scrub(line, self.target.password) for line in lines]

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = create_engine(self.target)
        return self._engine

    # -- Alembic objects -----------------------------------------------
    def config(self, connection: Any = None, buffer: io.StringIO | None = None) -> Config:
        attributes: dict[str, Any] = {"url": self.target.url}
        if connection is not None:
            attributes["connection"] = connection
        cfg = Config(
            file_=self.project.config_path,
            ini_section=self.project.ini_section,
            stdout=self.output,
            output_buffer=buffer if buffer is not None else self.output,
            attributes=attributes,
        )
        # Password-free URL only; '%' escaped for ConfigParser interpolation.
        cfg.set_section_option(self.project.ini_section, "sqlalchemy.url", self.target.url.replace("%", "%%"))
        return cfg

    def share_scripts(self, cache: dict[tuple[str, str, str], ScriptDirectory]) -> None:
        """Load the project's scripts once for every run given the same cache (a host's databases in one call)."""
        self._shared_scripts = cache

    @property
    def script(self) -> ScriptDirectory:
        key = (self.project.config_path, self.project.project_dir, self.project.ini_section)
        if self._script is None and self._shared_scripts is not None:
            self._script = self._shared_scripts.get(key)
        if self._script is None:
            try:
                self._script = ScriptDirectory.from_config(self.config())
                self._script.revision_map.heads  # noqa: B018 - the property loads every revision file now
            except CommandError as exc:
                raise FleetError(
                    "cannot load the migration scripts of %s (%s): check script_location and project_dir."
                    % (self.project.config_path, " ".join(str(exc).split()))
                ) from None
            except ModuleNotFoundError as exc:  # a revision file imports a package that is not installed here
                raise FleetError(
                    "cannot load the migration scripts of %s: a revision file imports %s, which is not installed in the Python that runs"
                    " the module (%s): %s" % (self.project.config_path, exc.name, sys.executable, DECLARE_PACKAGES)
                ) from None
            except Exception as exc:  # a revision file that does not import
                raise FleetError(
                    "cannot load the migration scripts of %s: %s: %s; fix the revision file." % (self.project.config_path, type(exc).__name__, exc)
                ) from None
            if self._shared_scripts is not None:
                self._shared_scripts[key] = self._script
        return self._script

    def lineage(self, current: Sequence[str]) -> list[Any]:
        """Scripts applied to a database at `current` (current down to base)."""
        if not current:
            return []
        return list(self.script.revision_map.iterate_revisions(tuple(current), "base", inclusive=True, assert_relative_length=False))

    def script_heads(self) -> list[str]:
        return list(self.script.get_heads())

    def revision_ids(self) -> list[str]:
        return [rev.revision for rev in self.script.walk_revisions()]

    def parse(self, spec: str | None, direction: str) -> TargetSpec:
        parsed = parse_target_spec(spec, direction)
        labels: set[str] = set()
        for rev in self.script.walk_revisions():
            labels.update(rev.branch_labels or ())
        return resolve_prefix(parsed, self.revision_ids(), labels)

    def _run_env(self, cfg: Config, fn: Callable[..., Any], context_class: type[EnvironmentContext] = EnvironmentContext, **kwargs: Any) -> None:
        with context_class(cfg, self.script, fn=fn, **kwargs):
            self.script.run_env()

    # -- database ------------------------------------------------------
    def exists(self) -> bool:
        return database_exists(self.target)

    def ensure_database(self, create: bool, maintenance_db: str) -> bool:
        """Create the database when allowed; True when it was created."""
        if self.exists():
            return False
        if not create:
            raise DatabaseMissing(self.target)
        create_database(self.target, maintenance_db)
        return True

    def probe(self, compare: bool = False, ignore_tables: Sequence[str] = ()) -> Probe:
        """Current heads (and model differences) via env.py, writing nothing."""
        if self.target.dialect == "sqlite" and not self.exists():
            return Probe(exists=False)
        found: dict[str, Any] = {}

        def inspect_database(rev: Any, context: Any) -> list[Any]:
            found["current"] = tuple(context.get_current_heads())
            found["versioned"] = bool(sa.inspect(context.connection).has_table(context.version_table, schema=context.version_table_schema))
            metadata = context.opts.get("target_metadata")
            found["metadata_note"] = _metadata_note(metadata)
            found["metadata_available"] = found["metadata_note"] is None
            if compare and found["metadata_available"]:
                found["diffs"] = [describe_diff(diff) for diff in compare_metadata(context, metadata) if diff_table(diff) not in ignore_tables]
            return []

        try:
            conn = connect(self.engine, self.target)  # one connection: a missing database is told by its error
        except DatabaseMissing:
            return Probe(exists=False)
        try:
            transaction = conn.begin()
            try:
                self._run_env(self.config(connection=conn), inspect_database, as_sql=False, dont_mutate=True)
                found["server_version"] = _server_version(conn)
            finally:
                if transaction.is_active:
                    transaction.rollback()
        except FleetError:
            raise
        except sa.exc.DBAPIError as exc:
            raise FleetError("reading the current revision of %s failed: %s" % (self.target.label, error_detail(exc, self.target))) from None
        finally:
            conn.close()
        return Probe(
            exists=True,
            current=found.get("current", ()),
            versioned=found.get("versioned", False),
            metadata_available=found.get("metadata_available", False),
            diffs=found.get("diffs"),
            server_version=found.get("server_version"),
            metadata_note=found.get("metadata_note"),
        )

    def plan(self, direction: str, spec: TargetSpec, current: Sequence[str]) -> list[Step]:
        """The steps Alembic would run, in order, from the current heads."""
        heads = self.script_heads()
        known = set(self.revision_ids())
        unknown = [rev for rev in current if rev not in known]
        if unknown:
            raise FleetError(
                "the database is at revision %s, which this project does not have: "
                "deploy the missing migration files (git checkout -- versions/) or check that url points at the right database." % ", ".join(unknown)
            )
        exact = exact_heads(spec, direction)
        if exact is not None:
            self._refuse_unreachable(spec, current, exact, direction)
            steps = steps_between(self.script, current, exact, direction)
            return [_step_from(step) for step in steps]
        try:
            if direction == "upgrade":
                # Alembic annotates current_rev as str, yet its own command.upgrade passes the tuple of current heads.
                steps = self.script._upgrade_revs(spec.alembic, tuple(current))  # type: ignore[arg-type]
            else:
                # Likewise (command.downgrade passes the heads tuple too).
                steps = self.script._downgrade_revs(spec.alembic, tuple(current))  # type: ignore[arg-type]
        except Exception as exc:  # CommandError, and a bare AssertionError for over-long walks
            if "ambiguous walk" in str(exc).lower() and direction == "upgrade":
                candidates = [describe(self.script, rev) for rev in next_revisions(self.script, current)]
                raise FleetError(
                    "target '%s' is ambiguous: from %s the history branches, and the next revision could be %s: "
                    "name the one to go to (its revision id, or <branch>@+1)." % (spec.given, ", ".join(current) or "base", " or ".join(candidates))
                ) from None
            raise explain_revision_error(exc, spec, current, heads, direction) from None
        if direction == "upgrade" and not steps and current and _may_lie_behind(spec):
            self._refuse_older_target(spec, current, heads)
        return [_step_from(step) for step in steps]

    def _refuse_unreachable(self, spec: TargetSpec, current: Sequence[str], exact: Sequence[str], direction: str) -> None:
        blocking = unreachable(self.script, current, exact, direction)
        if not blocking:
            return
        now = ", ".join(current) or "base (empty)"
        if direction == "upgrade":
            raise FleetError(
                "target '%s' cannot be reached by upgrading from the current revision %s: it would have to remove %s; "
                "use the downgrade module (or rollback.yml) for that." % (spec.given, now, ", ".join(blocking))
            )
        raise FleetError(
            "target '%s' cannot be reached by downgrading from the current revision %s (it is ahead of it or on another branch): "
            "it needs %s, which the database does not have; use the upgrade module." % (spec.given, now, ", ".join(blocking))
        )

    def _refuse_older_target(self, spec: TargetSpec, current: Sequence[str], heads: Sequence[str]) -> None:
        # head-N and <rev>-N too: "nothing to do" for them would hide that the database is above the target.
        # Alembic plans nothing for an upgrade to an ancestor; an operator who
        # asked for it meant something else, so say so instead of "ok".
        try:
            behind = self.script._downgrade_revs(spec.alembic, tuple(current))  # type: ignore[arg-type]  # heads tuple, as in plan()
        except Exception:
            return
        if behind:
            raise FleetError(
                "target '%s' cannot be reached by upgrading from the current revision %s (it is %d revision(s) behind it): "
                "use the downgrade module (or rollback.yml) to go back." % (spec.given, ", ".join(current), len(behind))
            )

    def render_sql(self, direction: str, spec: TargetSpec, current: Sequence[str]) -> tuple[str | None, str | None]:
        """Offline SQL for the plan from `current` (the database's heads) to `spec`; (sql, note) where note says
        why there is none.

        Runs on this run's loaded scripts, as command.upgrade/downgrade(sql=True) would on a fresh load of every
        revision file (which costs a whole project's loading per call: a real history's review calls this per step).
        Alembic's offline context starts from any tuple of heads (a merge, a database on two branches)."""
        if direction == "downgrade" and not current:
            return "", None

        def walk(rev: Any, context: Any) -> list[Any]:
            if direction == "upgrade":
                return self.script._upgrade_revs(spec.alembic, rev)
            return self.script._downgrade_revs(spec.alembic, rev)

        buffer = io.StringIO()
        try:
            self._run_env(self.config(buffer=buffer), walk, as_sql=True, starting_rev=tuple(current) or None, destination_rev=spec.alembic)
        except Exception as exc:  # a revision that cannot render offline
            return None, "SQL not rendered: %s cannot run in offline mode (%s)." % (
                "a revision after %s" % ", ".join(current) if current else "a revision",
                self._reason(exc),
            )
        return buffer.getvalue(), None

    def render_steps_sql(self, steps: Sequence[Step]) -> list[tuple[str | None, str | None]]:
        """Offline SQL of each upgrade step, as render_sql gives it for that step alone: (sql, note) per step.

        The plan is cut into linear runs (each step on the one before it); each run of several steps is rendered
        in ONE offline pass (Alembic runs env.py once, not once per revision) and cut at Alembic's
        "-- Running upgrade" markers, each piece framed by the pass's own transaction lines; a revision that cannot
        run offline gets (None, note) without stopping the others. A merge, a single step, or a pass that fails
        outside the revisions is rendered step by step.
        """
        rendered: list[tuple[str | None, str | None]] = []
        for run in _linear_runs(steps):
            rendered.extend(self._render_run(run))
        return rendered

    def _render_run(self, steps: Sequence[Step]) -> list[tuple[str | None, str | None]]:
        if len(steps) > 1 and all(step.direction == "upgrade" for step in steps):
            failed: dict[str, str] = {}
            sql = self._render_pass(steps, tuple(steps[0].down_revision), failed)
            pieces = _split_rendered(sql, len(steps)) if sql is not None else None
            if pieces is not None:
                return [
                    (None, "SQL not rendered: %s." % failed[step.revision]) if step.revision in failed else (piece, None)
                    for step, piece in zip(steps, pieces, strict=True)
                ]
        return [self.render_sql("upgrade", self.parse(step.revision, "upgrade"), list(step.down_revision)) for step in steps]

    def render_plan_sql(self, steps: Sequence[Step], current: Sequence[str] | None = None) -> tuple[str, list[str]]:
        """Offline SQL of a whole plan (upgrade or downgrade, across branches and merges) and a note per revision
        that cannot be rendered.

        One offline pass from `current` (the database's heads; when not given, what the first steps stand on).
        A revision that cannot run offline (it reads the database through op.get_bind()) does not hide the
        others: its SQL is replaced by a one-line comment naming it and why, and its note says the same.
        """
        if not steps:
            return "", []
        start = tuple(current) if current is not None else self._plan_start(steps)
        failed: dict[str, str] = {}
        try:
            sql = self._render_pass(steps, start, failed, strict=True)
        except Exception as exc:  # env.py, or Alembic itself, fails outside any revision
            note = "SQL not rendered: offline mode failed outside the revisions (%s)." % self._reason(exc)
            return "-- %s\n" % note, [note]
        return sql or "", ["SQL not rendered: %s." % why for why in failed.values()]

    def _render_pass(self, steps: Sequence[Step], start: tuple[str, ...], failed: dict[str, str], strict: bool = False) -> str | None:
        """One offline pass over exactly `steps` from heads `start`; a revision that raises is replaced by a
        comment and recorded in `failed` (revision -> why). None when the pass itself fails (raised if strict)."""
        buffer = io.StringIO()
        guarded = [self._guarded_step(step, buffer, failed) for step in steps]
        last = steps[-1]
        destination: Any = last.revision if last.direction == "upgrade" else (last.down_revision or "base")
        try:
            self._run_env(self.config(buffer=buffer), lambda rev, context: guarded, as_sql=True, starting_rev=start or None, destination_rev=destination)
        except Exception:
            if strict:
                raise
            return None
        return buffer.getvalue()

    def _guarded_step(self, step: Step, buffer: io.StringIO, failed: dict[str, str]) -> Any:
        """Alembic's migration step for `step`, whose failure in offline mode leaves a comment in the SQL instead."""
        script = self.script.get_revision(step.revision)
        if script is None:  # the plan came from this project: only a file deleted meanwhile gets here
            raise FleetError("revision %s is no longer in the project: run the plan again." % step.revision)
        if step.direction == "upgrade":
            migration = MigrationStep.upgrade_from_script(self.script.revision_map, script)
        else:
            migration = MigrationStep.downgrade_from_script(self.script.revision_map, script)
        original = migration.migration_fn

        @functools.wraps(original)  # Alembic names the step ("-- Running upgrade ...") after the function
        def render(**kw: Any) -> None:
            mark = buffer.tell()
            try:
                original(**kw)
            except Exception as exc:
                buffer.seek(mark)
                buffer.truncate()  # half a revision's SQL would read as all of it
                failed[step.revision] = self._unrendered(step, exc)
                buffer.write("-- %s\n\n" % failed[step.revision])

        migration.migration_fn = render
        return migration

    def _unrendered(self, step: Step, exc: BaseException) -> str:
        text = "revision %s (%s) cannot run in offline mode (%s)" % (step.revision, os.path.basename(step.path), self._reason(exc))
        if _reads_database(step.path):
            text += "; it reads the database through op.get_bind(), which returns nothing in offline mode"
        return text

    def _reason(self, exc: BaseException) -> str:
        """`Type: first line of the message`, without the password."""
        first = _first_line(scrub(str(exc), self.target.password))
        return "%s: %s" % (type(exc).__name__, first) if first else type(exc).__name__

    def _plan_start(self, steps: Sequence[Step]) -> tuple[str, ...]:
        """The heads a plan starts from, as its steps tell them: what the upgrades stand on, or what the
        downgrades remove first; an ancestor of another of them is not a head."""
        found: list[str] = []
        seen: set[str] = set()
        for step in steps:
            if step.direction == "upgrade":
                found.extend(down for down in step.down_revision if down not in seen and down not in found)
                seen.add(step.revision)
            else:
                if step.revision not in seen and step.revision not in found:
                    found.append(step.revision)
                seen.update(step.down_revision)
        below = {script.revision for head in found for script in self.lineage([head]) if script.revision != head}
        return tuple(rev for rev in found if rev not in below)

    def render_stamp_sql(self, spec: TargetSpec, current: Sequence[str]) -> tuple[str | None, str | None]:
        if len(current) > 1:
            return None, "SQL not rendered: the database is at several heads."
        buffer = io.StringIO()
        cfg = self.config(buffer=buffer)
        revision = "%s:%s" % (current[0], spec.alembic) if current else spec.alembic
        try:
            command.stamp(cfg, revision, sql=True)
        except Exception as exc:
            return None, "SQL not rendered: %s" % " ".join(str(exc).split())
        return buffer.getvalue(), None

    def migrate(
        self,
        direction: str,
        spec: TargetSpec,
        before_commit: Callable[[Any], None] | None = None,
        transactional: bool | None = None,
        per_revision: bool = False,
    ) -> None:
        """Run the migration in one transaction on the shared connection.

        With transactional=False (a revision uses autocommit_block, which must commit what precedes it), the
        transaction is left to Alembic's env.py, and before_commit runs in a transaction of its own afterwards.
        per_revision: each revision commits on its own (the locks one takes are released before the next starts);
        before_commit runs in the last one's transaction.
        """

        exact = exact_heads(spec, direction)

        def steps(rev: Any, context: Any) -> list[Any]:
            if exact is not None:
                return steps_between(self.script, tuple(rev or ()), exact, direction)
            if direction == "upgrade":
                return self.script._upgrade_revs(spec.alembic, rev)
            return self.script._downgrade_revs(spec.alembic, rev)

        verb = "applying" if direction == "upgrade" else "undoing"
        self.progress.step(direction)
        planned = self._reporting(steps, verb)
        if transactional is None:  # not planned by the caller: any autocommit_block in the project counts
            transactional = not any(uses_autocommit_block(rev.path) for rev in self.script.walk_revisions())
        if transactional and per_revision:
            self._run_one_by_one(steps, destination_rev=spec.alembic, before_commit=before_commit, verb=verb)
        elif transactional:
            self._run_in_transaction(planned, destination_rev=spec.alembic, before_commit=before_commit)
        else:
            self._run_in_alembic_transactions(planned, destination_rev=spec.alembic, before_commit=before_commit, per_revision=per_revision)

    def _reporting(self, fn: Callable[..., Any], verb: str) -> Callable[..., Any]:
        """fn, telling the progress file which revision Alembic is about to run as it takes each from the plan.

        Alembic takes the steps one at a time from what fn returns, so each revision is reported as it starts, not
        when the whole plan is made; the function Alembic is given must be the wrapped one (see _run_one_by_one).
        """
        if not self.progress.enabled:
            return fn

        def reported(rev: Any, context: Any) -> Iterator[Any]:
            todo = list(fn(rev, context))
            for index, step in enumerate(todo):
                self.progress.update(_step_progress(verb, step, len(todo) - index - 1), force=True)
                yield step

        return reported

    def _run_one_by_one(self, fn: Callable[..., Any], destination_rev: str, before_commit: Callable[[Any], None] | None, verb: str = "applying") -> None:
        """Each step in a transaction of our own, planned afresh from the heads the previous one committed.

        Planning from the database each time makes a retry after a lock timeout start where the last commit left it.
        """
        left: list[int] = []  # how many steps were still to run at the start of each transaction

        def next_step(rev: Any, context: Any) -> list[Any]:
            todo = list(fn(rev, context))
            left.append(len(todo))
            return todo[:1]

        def last_commits(conn: Any) -> None:
            if (not left or left[-1] <= 1) and before_commit is not None:
                before_commit(conn)

        while True:
            self._run_in_transaction(self._reporting(next_step, verb), destination_rev=destination_rev, before_commit=last_commits)
            if not left or left[-1] <= 1:
                return

    def stamp(self, spec: TargetSpec, before_commit: Callable[[Any], None] | None = None) -> None:
        def steps(rev: Any, context: Any) -> list[Any]:
            return self.script._stamp_revs(spec.revisions or spec.alembic, rev)

        self._run_in_transaction(steps, destination_rev=spec.alembic, before_commit=before_commit)

    def _run_in_transaction(self, fn: Callable[..., Any], destination_rev: str, before_commit: Callable[[Any], None] | None) -> None:
        conn = connect(self.engine, self.target)
        try:
            transaction = conn.begin()
            try:
                if conn.dialect.name == "postgresql":
                    for name, value in self.session_settings.items():
                        conn.exec_driver_sql("SET %s = '%s'" % (name, value))
                self._run_env(self.config(connection=conn), fn, as_sql=False, destination_rev=destination_rev)
                if before_commit is not None:
                    before_commit(conn)  # the ledger row commits with the migration, or not at all
            except BaseException:
                if transaction.is_active:
                    transaction.rollback()
                raise
            if transaction.is_active:
                transaction.commit()
        finally:
            conn.close()

    def _run_in_alembic_transactions(
        self, fn: Callable[..., Any], destination_rev: str, before_commit: Callable[[Any], None] | None, per_revision: bool = False
    ) -> None:
        conn = connect(self.engine, self.target)
        try:
            if conn.dialect.name == "postgresql" and self.session_settings:
                for name, value in self.session_settings.items():
                    conn.exec_driver_sql("SET %s = '%s'" % (name, value))  # session-wide: they outlive the commit
                conn.commit()
            try:
                context_class = _TransactionPerRevision if per_revision else EnvironmentContext
                self._run_env(self.config(connection=conn), fn, as_sql=False, destination_rev=destination_rev, context_class=context_class)
                if conn.in_transaction():
                    conn.commit()
            except BaseException:
                if conn.in_transaction():
                    conn.rollback()
                raise
            if before_commit is not None:
                with conn.begin():
                    before_commit(conn)
        finally:
            conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A short transaction of our own (ledger bookkeeping), committed on success."""
        conn = connect(self.engine, self.target)
        try:
            with conn.begin():
                yield conn
        finally:
            conn.close()


def _step_progress(verb: str, step: Any, after: int) -> str:
    """'applying 3f2a9c1e (add an index on trades), 2 more after it'."""
    script = getattr(step, "revision", None)
    revision = str(getattr(script, "revision", None) or getattr(step, "up_revision_id", None) or "?")
    doc = " ".join(str(getattr(script, "doc", "") or "").split())[:60]
    text = "%s %s" % (verb, revision) + (" (%s)" % doc if doc else "")
    return text + (", %d more after it" % after if after else "")


class _TransactionPerRevision(EnvironmentContext):
    """env.py's configure() with transaction_per_migration forced on: Alembic commits after each revision."""

    def configure(self, *args: Any, **kwargs: Any) -> None:
        kwargs["transaction_per_migration"] = True
        super().configure(*args, **kwargs)


def _metadata_note(metadata: Any) -> str | None:
    """Why env.py's target_metadata gives no models to compare with, or None when it does.

    A MetaData() with no tables (kept for its naming convention) describes nothing: compared, every table
    of the database would read as missing from the models.
    """
    if metadata is None:
        return "env.py exposes no target_metadata, so the schema was not compared with models"
    collection = metadata if isinstance(metadata, (list, tuple)) else [metadata]
    if not any(getattr(item, "tables", None) for item in collection):
        return "env.py's target_metadata has no tables, so the schema was not compared with models"
    return None


def _server_version(conn: Any) -> str | None:
    try:
        if conn.dialect.name == "postgresql":
            return str(conn.exec_driver_sql("SHOW server_version").scalar())
        if conn.dialect.name == "sqlite":
            return "SQLite %s" % conn.exec_driver_sql("select sqlite_version()").scalar()
    except Exception:
        return None
    return None


def explain_migration_failure(exc: BaseException, target: DbTarget, direction: str, run: AlembicRun | None = None) -> str:
    """The message for a migration that raised, without the password, naming the file and line that failed.

    Given the run, the revision is found among the project's own revision files (any version location, any
    folder name) and a failure raised outside them, in env.py or a helper module of the project, is named too.
    """
    detail = error_detail(exc, target)
    statement = getattr(exc, "statement", None)
    frames = _frames(exc)
    where = _failure_site(frames, run) if run is not None else _revision_site(frames, set())
    text = "%s failed%s: %s: %s" % (direction, where, type(getattr(exc, "orig", None) or exc).__name__, detail)
    if statement:
        text += " [statement: %s]" % " ".join(str(statement).split())[:300]
    return text


def _frames(exc: BaseException) -> list[tuple[str, int, bool]]:
    """(file, line, defines a revision) per traceback frame, outermost first."""
    found = []
    tb = exc.__traceback__
    while tb is not None:
        names = tb.tb_frame.f_globals
        found.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno, "revision" in names and "down_revision" in names))
        tb = tb.tb_next
    return found


def _revision_site(frames: Sequence[tuple[str, int, bool]], revision_files: set[str]) -> str:
    # Without the project's list, a revision module is known by its `revision` and `down_revision` globals: a
    # path test ("/versions/") also matches the Python installation's own (pyenv's .../versions/3.11.7/lib).
    for filename, line, is_revision in reversed(frames):
        if _real(filename) in revision_files or (not revision_files and is_revision):
            return " in %s line %s" % (os.path.basename(filename), line)
    return ""


def _failure_site(frames: Sequence[tuple[str, int, bool]], run: AlembicRun) -> str:
    """' in <revision file> line N', with the project file that raised when that is another one (a helper,
    env.py); '' when no frame is the project's."""
    try:
        revision_files = {_real(script.path) for script in run.script.walk_revisions()}
    except Exception:  # the scripts did not load: nothing to match against
        revision_files = set()
    roots = _project_roots(run)
    revision_at = next((i for i in range(len(frames) - 1, -1, -1) if _real(frames[i][0]) in revision_files), None)
    own_at = next((i for i in range(len(frames) - 1, -1, -1) if _is_project_file(frames[i][0], roots)), None)
    if revision_at is None:
        return "" if own_at is None else " in %s line %s" % (_shown(frames[own_at][0], roots), frames[own_at][1])
    where = " in %s line %s" % (os.path.basename(frames[revision_at][0]), frames[revision_at][1])
    if own_at is not None and own_at > revision_at and _real(frames[own_at][0]) not in revision_files:
        where += " (raised in %s line %s)" % (_shown(frames[own_at][0], roots), frames[own_at][1])
    return where


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _project_roots(run: AlembicRun) -> list[str]:
    roots = [run.project.project_dir, os.path.dirname(run.project.config_path)]
    try:
        roots.append(run.script.dir)
        roots.extend(run.script.version_locations)
    except Exception:
        pass
    return sorted({_real(root) for root in roots}, key=len, reverse=True)


def _is_project_file(path: str, roots: Sequence[str]) -> bool:
    real = _real(path)
    if not os.path.isfile(real) or _is_installed(real) or real.startswith(_OUR_PACKAGE + os.sep):
        return False
    return any(real.startswith(root + os.sep) for root in roots)


# Our own frames are never the project's: the whole package fleet/ (this file is fleet/alembic/run.py), which
# AnsiballZ unpacks wherever it likes, next to nothing of the project.
_OUR_PACKAGE = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _is_installed(path: str) -> bool:
    # A virtualenv inside the project directory holds Alembic and SQLAlchemy: those frames are not the project's.
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    prefixes = {_real(prefix) for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return any(path.startswith(prefix + os.sep) for prefix in prefixes)


def _shown(path: str, roots: Sequence[str]) -> str:
    real = _real(path)
    root = next(root for root in roots if real.startswith(root + os.sep))
    return os.path.relpath(real, root)


# -- schema differences ---------------------------------------------------
def _name(obj: Any) -> str:
    name = getattr(obj, "name", obj)
    return "" if name is None else str(name)


def _table_of(obj: Any) -> str:
    table = getattr(obj, "table", None)
    return _name(table) if table is not None else "?"


def open_run(params: dict[str, Any]) -> AlembicRun:
    """The AlembicRun a module's params ask for (url, password, config, ...), its waits and counts checked first."""
    # Waits and counts are checked before anything is read or written (check mode too): a negative one would be
    # clamped to 0, or wait in a way nobody asked for, without a word.
    LockOptions.from_params(params)
    Timeouts.from_params(params)
    connection, project = Connection.from_params(params), Project.from_params(params)
    return AlembicRun(load_project(project.config, project.project_dir, project.ini_section), connection.target)


def diff_table(diff: Any) -> str | None:
    """The table a compare_metadata difference is about."""
    if isinstance(diff, list):
        return diff_table(diff[0]) if diff else None
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        return _name(diff[1])
    if kind in ("add_column", "remove_column") or kind.startswith("modify_"):
        return str(diff[2])
    return _table_of(diff[1]) if len(diff) > 1 else None


def describe_diff(diff: Any, reference: str = "models") -> str:
    """One readable line per difference reported by compare_metadata.

    `reference` names what the database is compared with (the models, or the
    schema the migrations build at a revision).
    """
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(describe_diff(item, reference) for item in diff)
    kind = diff[0]
    added = kind.startswith("add")
    side, other = (reference, "database") if added else ("database", reference)
    if kind in ("add_table", "remove_table"):
        return "table %s is in the %s but not in the %s" % (_name(diff[1]), side, other)
    if kind in ("add_column", "remove_column"):
        return "column %s.%s is in the %s but not in the %s" % (diff[2], _name(diff[3]), side, other)
    if kind in ("add_index", "remove_index"):
        index = diff[1]
        columns = ", ".join(_name(c) for c in getattr(index, "columns", []))
        return "index %s on %s(%s) is in the %s but not in the %s" % (_name(index), _table_of(index), columns, side, other)
    if kind in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        constraint = diff[1]
        label = "foreign key" if kind.endswith("fk") else "constraint"
        return "%s %s on %s is in the %s but not in the %s" % (label, _name(constraint) or "(unnamed)", _table_of(constraint), side, other)
    if kind.startswith("modify_"):
        _, _schema, table, column, _existing, old, new = diff[:7]
        what = kind[len("modify_") :]
        return "column %s.%s %s differs: database has %s, %s %s %s" % (table, column, what, old, reference, "have" if reference == "models" else "has", new)
    return "difference %r" % (diff,)


def describe_blocker(run: AlembicRun, exc: BaseException) -> str:
    """Which session holds the lock a statement gave up on: 'table X is locked by pid N running '...' for M s'."""
    statement = " ".join(str(getattr(exc, "statement", "") or "").split())
    match = re.search(r"\b(?:TABLE|ON|INTO|FROM|UPDATE)\s+(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?\"?([A-Za-z0-9_.]+)\"?", statement, re.I)
    table = match.group(1).split(".")[-1] if match else None
    query = (
        "select c.relname, a.pid, left(a.query, 120), extract(epoch from now() - coalesce(a.xact_start, a.query_start))::int, a.usename "
        "from pg_locks l join pg_class c on c.oid = l.relation join pg_stat_activity a on a.pid = l.pid "
        "where l.granted and a.pid <> pg_backend_pid() and a.datname = current_database() and c.relkind in ('r', 'p', 'i') "
        "and (:table is null or c.relname = :table) "
        "order by a.xact_start nulls last limit 1"
    )
    try:
        with run.transaction() as conn:
            row = conn.execute(sa.text(query), {"table": table}).first()
    except Exception:
        row = None
    if row is None:
        return "%s was locked by another session (which has let go since)" % (("table %s" % table) if table else "a table")
    if row[3] is None:  # another role's session: its statement and times are hidden from this user
        return "table %s is locked by pid %s of user %s, whose statement and start are hidden from this user (grant it pg_read_all_stats to see them)" % (
            row[0],
            row[1],
            row[4],
        )
    return "table %s is locked by pid %s (user %s) running '%s' for %s s" % (row[0], row[1], row[4], " ".join(str(row[2]).split()), row[3])


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 3)


_RUNNING_MARKER = re.compile(r"^-- Running upgrade .* -> .*$", re.M)


def _linear_runs(steps: Sequence[Step]) -> list[list[Step]]:
    """The plan cut where a step does not stand on the step before it alone (a branch taken up); a merge is a run
    of its own (offline mode starts it from several heads)."""
    runs: list[list[Step]] = []
    for step in steps:
        follows = bool(runs) and tuple(step.down_revision) == (runs[-1][-1].revision,) and len(runs[-1][-1].down_revision) <= 1
        if follows and len(step.down_revision) <= 1:
            runs[-1].append(step)
        else:
            runs.append([step])
    return runs


def _split_rendered(sql: str, count: int) -> list[str] | None:
    """Cut one offline rendering of `count` upgrade steps into the SQL each step renders alone; None when the
    markers do not match the steps (then the caller renders step by step)."""
    starts = [match.start() for match in _RUNNING_MARKER.finditer(sql)]
    if len(starts) != count:
        return None
    between = "COMMIT;\n\nBEGIN;\n\n"
    if count > 1 and all(sql[:start].endswith(between) for start in starts[1:]):
        # transaction_per_migration: each step already has its own BEGIN/COMMIT, so cut before each BEGIN.
        cuts = [0] + [start - len("BEGIN;\n\n") for start in starts[1:]] + [len(sql)]
        return [sql[cuts[i] : cuts[i + 1]] for i in range(count)]
    preamble, body = sql[: starts[0]], sql[starts[0] :]
    opening = "BEGIN;\n\n" if preamble.startswith("BEGIN;\n\n") else ""
    closing = "COMMIT;\n\n" if body.endswith("COMMIT;\n\n") else ""
    if bool(opening) != bool(closing):
        return None
    body = body[: len(body) - len(closing)]
    offsets = [start - starts[0] for start in starts] + [len(body)]
    chunks = [body[offsets[i] : offsets[i + 1]] for i in range(count)]
    return [(preamble if i == 0 else opening) + chunk + closing for i, chunk in enumerate(chunks)]
