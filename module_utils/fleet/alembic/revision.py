# -*- coding: utf-8 -*-
# The revision-target grammar shared by upgrade, downgrade and stamp, checked
# before Alembic sees it so that every mistake gets one sentence that says
# what to write instead. Pure Python: no Alembic import.
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ansible.module_utils.fleet.core.common import FleetError

SYMBOLS = ("head", "heads", "base")
MIN_PREFIX = 4  # Alembic's own minimum for a partial revision id

_GRAMMAR_HELP = (
    "use head, heads, a revision id (full, or a unique prefix of at least 4 characters), "
    "+N or -N (relative to the current revision), <revision>+N, head-N (the guides' head~N), <branch>@head, "
    "or several revision ids separated by commas (exactly those heads)"
)
_TOKEN = r"[A-Za-z0-9_]+"
_SPEC = re.compile(r"^(?:(?P<rel>[+-]\d+)|(?:(?P<branch>%s)@)?(?P<ref>%s)(?P<offset>[+-]\d+)?)$" % (_TOKEN, _TOKEN))
_TILDE = re.compile(r"^(?P<ref>.+?)~(?P<n>\d+)$")


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target: what the operator wrote and the form Alembic takes."""

    given: str
    alembic: str  # normalised text handed to Alembic
    branch: str | None
    ref: str | None  # head, heads, base or a revision id/prefix; None for bare +N/-N
    offset: int  # relative steps (+ up, - down); 0 when absolute
    # Several revision ids ("a1b2,c3d4"): the database ends at exactly these heads (a branch of a project with
    # several heads, or where a run started). `ref` is then the first of them.
    revisions: tuple[str, ...] = ()

    @property
    def is_relative_to_current(self) -> bool:
        return self.ref is None


def parse_target_spec(spec: str | None, direction: str) -> TargetSpec:
    """Parse and validate a target for 'upgrade', 'downgrade' or 'stamp'."""
    text = "" if spec is None else str(spec).strip()
    if not text:
        raise FleetError("target is empty: %s." % _GRAMMAR_HELP)
    given = " ".join(text.split())  # what messages quote: always one line
    if "," in text:
        return _parse_list(given, [part.strip() for part in text.split(",")], direction)
    tilde = _TILDE.match(text)
    if tilde:
        # The guides write head~N; Alembic spells it head-N.
        text = "%s-%s" % (tilde.group("ref"), tilde.group("n"))
    match = _SPEC.match(text)
    if not match:
        raise FleetError("target '%s' is not a revision target: %s." % (given, _GRAMMAR_HELP))
    rel = match.group("rel")
    if rel is not None:
        offset = int(rel)
        if offset == 0:
            raise FleetError("target '%s' moves nowhere: give +N to go up or -N to go down, with N of at least 1." % given)
        parsed = TargetSpec(given=given, alembic="%+d" % offset, branch=None, ref=None, offset=offset)
    else:
        branch = match.group("branch")
        ref = match.group("ref")
        offset = int(match.group("offset") or 0)
        if ref.lower() in SYMBOLS:
            ref = ref.lower()
        if ref == "heads" and (branch or offset):
            raise FleetError("target '%s' is not valid: 'heads' takes no branch or offset; use <branch>@head or head-N." % given)
        if ref == "base" and (branch or offset < 0):
            raise FleetError("target '%s' is not valid: nothing lies below base; use base or base+N." % given)
        if ref not in SYMBOLS and len(ref) < MIN_PREFIX and not branch:
            raise FleetError("target '%s' is too short to name a revision: give at least %d characters of the revision id." % (given, MIN_PREFIX))
        alembic = "%s%s%s" % ("%s@" % branch if branch else "", ref, "%+d" % offset if offset else "")
        parsed = TargetSpec(given=given, alembic=alembic, branch=branch, ref=ref, offset=offset)
    _check_direction(parsed, direction)
    return parsed


def _parse_list(given: str, parts: list[str], direction: str) -> TargetSpec:
    """'a1b2,c3d4': exactly these revisions (the heads a database should end at)."""
    for part in parts:
        if not re.match(r"^%s$" % _TOKEN, part) or part.lower() in SYMBOLS:
            raise FleetError(
                "target '%s' is not a list of revision ids: '%s' is not one; a list names revisions only (no head, base, +N or branch@)." % (given, part)
            )
        if len(part) < MIN_PREFIX:
            raise FleetError("target '%s' has '%s', too short to name a revision: give at least %d characters of each id." % (given, part, MIN_PREFIX))
    unique = tuple(dict.fromkeys(parts))
    return TargetSpec(given=given, alembic=" ".join(unique), branch=None, ref=unique[0], offset=0, revisions=unique)


def _check_direction(spec: TargetSpec, direction: str) -> None:
    if direction == "upgrade":
        if spec.ref is None and spec.offset < 0:
            raise FleetError("target '%s' goes down: use the downgrade module (or rollback.yml) to move to an earlier revision." % spec.given)
        if spec.ref == "base" and spec.offset == 0:
            raise FleetError("target 'base' is below every revision: upgrade to head or a revision id, or use the downgrade module to go to base.")
    elif direction == "downgrade":
        if spec.ref is None and spec.offset > 0:
            raise FleetError("target '%s' goes up: use the upgrade module to apply later revisions." % spec.given)
    elif direction == "stamp":
        if spec.offset:
            raise FleetError("target '%s' is relative: stamp takes an absolute revision (head, heads, base or a revision id)." % spec.given)
    else:  # pragma: no cover - programming error
        raise ValueError(direction)


def resolve_prefix(spec: TargetSpec, revision_ids: Iterable[str], branch_labels: Iterable[str] = ()) -> TargetSpec:
    """Expand a partial revision id to the full one, or say why it cannot be.

    Alembic answers an ambiguous prefix with "Can't locate revision"; operators
    need the candidates instead.
    """
    if spec.revisions:
        ids = list(revision_ids)
        resolved = tuple(dict.fromkeys(resolve_prefix(parse_target_spec(part, "stamp"), ids).ref or part for part in spec.revisions))
        return TargetSpec(given=spec.given, alembic=" ".join(resolved), branch=None, ref=resolved[0], offset=0, revisions=resolved)
    if spec.ref is None or spec.ref in SYMBOLS:
        return spec
    ids = sorted(set(revision_ids))
    if spec.ref in ids:
        return spec
    if spec.branch is None and spec.ref in set(branch_labels):
        return spec
    candidates = [rev for rev in ids if rev.startswith(spec.ref)]
    if not candidates:
        raise FleetError(
            "unknown revision '%s': no revision of this project has that id or prefix; "
            "run the status module (or look in versions/) for the ids, and check the migration files are all deployed." % spec.ref
        )
    if len(candidates) > 1:
        raise FleetError("revision prefix '%s' is ambiguous: it matches %s; give more characters." % (spec.ref, ", ".join(candidates)))
    full = candidates[0]
    alembic = "%s%s%s" % ("%s@" % spec.branch if spec.branch else "", full, "%+d" % spec.offset if spec.offset else "")
    return TargetSpec(given=spec.given, alembic=alembic, branch=spec.branch, ref=full, offset=spec.offset)
