# -*- coding: utf-8 -*-
# The review of a plan, kept: a real history's review renders every pending revision offline and lints it, on
# every database and in every environment, for the same files. Its result (before the environment's policy and
# acknowledgements are applied, which stay per run) depends only on what the key holds, so it is computed once and
# reused: across the databases of one module call (in memory), and across runs and environments when a directory
# is given (one JSON file per key on the host that runs the module).
#
# The key: every file under the project's script_location (revisions, env.py, helpers kept beside them) and its
# alembic.ini, byte for byte; the plan (revision ids and parents, in order); the dialect and the PostgreSQL version
# squawk is told; whether the database was empty; a transaction per revision or per plan; the versions of Alembic,
# SQLAlchemy, pglast and the squawk binary; and the source of the review code itself. What is not in it: helper
# packages installed outside the project (a changed one is not seen: clear the directory, or turn the cache off).
# A cache that cannot be read or written is no cache: the review runs as without one.
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from ansible.module_utils.fleet.alembic.run import AlembicRun, Step

FORMAT = 1
KEEP_FILES = 500  # the newest entries kept in a directory; older ones are removed when a new one is written
_MEMORY: dict[str, str] = {}  # key -> JSON of the revisions, for the databases of one module call
_CODE = ("review.lint", "review.sql", "review.upgrade", "review.downgrade", "review.rules", "review.cache", "alembic.run")
_code_fingerprint: str | None = None


class ReviewCache:
    """Reviewed revisions by key: in memory for this process, and in `directory` when one is given."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = os.path.abspath(os.path.expanduser(directory)) if directory else None
        self.hits = 0
        self.misses = 0

    def key(self, run: AlembicRun, steps: Sequence[Step], pg_version: str | None, fresh: bool, per_revision: bool, squawk: str | None) -> str | None:
        """The key of this plan's review, or None when one of its parts cannot be read (then nothing is cached)."""
        code = code_fingerprint()
        if code is None:
            return None
        digest = hashlib.sha256()
        try:
            _add_tree(digest, run.script.dir)
            with open(run.project.config_path, "rb") as handle:
                digest.update(handle.read())
            squawk_stat = os.stat(squawk) if squawk else None
        except OSError:
            return None
        parts = {
            "format": FORMAT,
            "code": code,
            "plan": [[step.revision, list(step.down_revision), step.direction] for step in steps],
            "dialect": run.target.dialect,
            "pg_version": pg_version,
            "fresh": fresh,
            "per_revision": per_revision,
            "versions": _library_versions(),
            "squawk": [squawk, squawk_stat.st_size, squawk_stat.st_mtime_ns] if squawk_stat else None,
        }
        digest.update(json.dumps(parts, sort_keys=True).encode("utf-8"))
        return digest.hexdigest()

    def get(self, key: str) -> list[dict[str, Any]] | None:
        text = _MEMORY.get(key)
        if text is None and self.directory:
            try:
                with open(os.path.join(self.directory, key + ".json"), encoding="utf-8") as handle:
                    text = handle.read()
            except OSError:
                text = None
        found = _load(text) if text is not None else None
        if text is None or found is None:
            self.misses += 1
            return None
        _MEMORY[key] = text
        self.hits += 1
        return found

    def put(self, key: str, revisions: Sequence[dict[str, Any]]) -> None:
        text = json.dumps({"format": FORMAT, "revisions": list(revisions)}, sort_keys=True)
        _MEMORY[key] = text
        if not self.directory:
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            handle, temp = tempfile.mkstemp(prefix=".%s." % key[:12], suffix=".tmp", dir=self.directory)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temp, os.path.join(self.directory, key + ".json"))
            _prune(self.directory)
        except OSError:
            pass  # a cache that cannot be written is no cache

    def stats(self) -> dict[str, Any]:
        return {"directory": self.directory, "hits": self.hits, "misses": self.misses}


def _load(text: str) -> list[dict[str, Any]] | None:
    """The revisions of a cached entry (a fresh copy each time: the policy is applied to them in place)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("revisions"), list):
        return None
    return data["revisions"]  # type: ignore[no-any-return]


def _add_tree(digest: Any, root: str) -> None:
    """Every file under root (names and bytes, in a fixed order), byte-compiled caches left out."""
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(directory, name)
            digest.update(os.path.relpath(path, root).encode("utf-8") + b"\0")
            with open(path, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in ("alembic", "sqlalchemy", "pglast"):
        module = sys.modules.get(name)
        versions[name] = str(getattr(module, "__version__", None))
    return versions


def code_fingerprint() -> str | None:
    """The source of the review code (and the offline rendering it reads): a changed rule is a changed key.
    None when a source cannot be read (then nothing is cached)."""
    global _code_fingerprint
    if _code_fingerprint is None:
        fleet = __name__.rsplit(".", 2)[0]  # the package of our module_utils, under whichever name it was imported
        digest = hashlib.sha256()
        for name in _CODE:
            module = sys.modules.get("%s.%s" % (fleet, name))
            loader = getattr(module, "__loader__", None)
            try:
                source = loader.get_source("%s.%s" % (fleet, name)) if loader is not None else None
            except Exception:
                source = None
            if source is None:
                return None
            digest.update(name.encode("utf-8") + b"\0" + source.encode("utf-8"))
        _code_fingerprint = digest.hexdigest()
    return _code_fingerprint


def _prune(directory: str) -> None:
    entries = []
    for name in os.listdir(directory):
        if name.endswith(".json"):
            path = os.path.join(directory, name)
            try:
                entries.append((os.stat(path).st_mtime_ns, path))
            except OSError:
                continue
    for _, path in sorted(entries, reverse=True)[KEEP_FILES:]:
        try:
            os.unlink(path)
        except OSError:
            pass
