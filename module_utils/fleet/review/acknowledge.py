# -*- coding: utf-8 -*-
# Acknowledgements kept outside the revision files: the review file beside
# alembic.ini (fleet-review.yml) and the modules' acknowledge option, both
#   acknowledge: {<revision id or unique prefix of 4+ chars>: {<rule>: <reason>}}
# Editing an applied revision file would change its checksum and fail every
# database that applied it, and a third-party history is acknowledged after the
# fact: so a finding is accepted here, by revision and rule, with a reason. The
# option wins over the file, the file over the revision's own fleet_acknowledge.
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ansible.module_utils.fleet.alembic.revision import MIN_PREFIX  # a unique prefix, as Alembic takes it
from ansible.module_utils.fleet.core.common import FleetError
from ansible.module_utils.fleet.review.rules import RULES

REVIEW_FILE = "fleet-review.yml"
OPTION = "acknowledge option"
IN_FILE = "fleet_acknowledge"
_NOT_ACKNOWLEDGEABLE = frozenset({"invalid-acknowledgement"})

Acknowledgements = dict[str, dict[str, "Acknowledgement"]]  # revision -> rule -> acknowledgement


@dataclass(frozen=True)
class Acknowledgement:
    reason: str
    source: str  # REVIEW_FILE, OPTION or IN_FILE


def review_file_path(config_path: str) -> str:
    """Where the review file of the project whose alembic.ini is config_path lives."""
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), REVIEW_FILE)


def read_review_file(path: str) -> dict[str, dict[str, str]]:
    """The acknowledge mapping of the review file at path ({} when there is no file), shape-checked."""
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise FleetError("%s cannot be read (%s): give the user running the module read access to it." % (path, exc.strerror or exc)) from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise FleetError("%s is not valid YAML (%s): fix its syntax." % (path, detail)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FleetError("%s holds a %s: write it as a mapping with one key, acknowledge: {<revision>: {<rule>: <reason>}}." % (path, type(data).__name__))
    unknown = sorted(str(key) for key in data if key != "acknowledge")
    if unknown:
        raise FleetError("%s: unknown key %s: the file holds only acknowledge: {<revision>: {<rule>: <reason>}}." % (path, ", ".join(unknown)))
    return check_mapping(data.get("acknowledge"), path)


def check_mapping(raw: Any, where: str) -> dict[str, dict[str, str]]:
    """{revision: {rule: reason}} with known rules and non-empty reasons, or a one-line FleetError naming where and the key."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise FleetError("%s: acknowledge is a %s: write it as {<revision>: {<rule>: <why it is safe>}}." % (where, type(raw).__name__))
    checked: dict[str, dict[str, str]] = {}
    for revision, rules in raw.items():
        key = str(revision).strip()
        if not key:
            raise FleetError("%s: acknowledge has an empty revision key: give a revision id (or a unique prefix of %d+ characters)." % (where, MIN_PREFIX))
        if not isinstance(rules, Mapping) or not rules:
            raise FleetError("%s: acknowledge: %s: give a mapping of rule to reason, e.g. {ban-drop-column: why it is safe}." % (where, key))
        checked[key] = {_checked_rule(where, key, rule): _checked_reason(where, key, rule, reason) for rule, reason in rules.items()}
    return checked


def _checked_rule(where: str, revision: str, rule: Any) -> str:
    name = str(rule).strip()
    if name not in RULES or name in _NOT_ACKNOWLEDGEABLE:
        raise FleetError(
            "%s: acknowledge: %s: '%s' is not a rule of the review: use the rule name a finding line shows (e.g. ban-drop-column)." % (where, revision, rule)
        )
    return name


def _checked_reason(where: str, revision: str, rule: Any, reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise FleetError("%s: acknowledge: %s: %s has no reason: say why the finding is safe here (a non-empty text)." % (where, revision, rule))
    return " ".join(reason.split())


def resolve(mapping: Mapping[str, Mapping[str, str]], revision_ids: Iterable[str], where: str, source: str) -> Acknowledgements:
    """The mapping keyed by full revision ids: each key an id, or a unique prefix of 4+ characters."""
    ids = sorted(set(revision_ids))
    resolved: Acknowledgements = {}
    for key, rules in mapping.items():
        revision = _revision(key, ids, where)
        resolved.setdefault(revision, {}).update({rule: Acknowledgement(reason, source) for rule, reason in rules.items()})
    return resolved


def _revision(key: str, ids: list[str], where: str) -> str:
    if key in ids:
        return key
    candidates = [rev for rev in ids if rev.startswith(key)] if len(key) >= MIN_PREFIX else []
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise FleetError("%s: acknowledge: %s matches several revisions (%s): give more characters." % (where, key, ", ".join(candidates)))
    if len(key) < MIN_PREFIX and any(rev.startswith(key) for rev in ids):
        raise FleetError("%s: acknowledge: %s is too short a prefix: give the revision id or at least %d characters." % (where, key, MIN_PREFIX))
    raise FleetError(
        "%s: acknowledge: %s names no revision of this project: give a revision id from the finding line (alembic history lists them)." % (where, key)
    )


def merge(*layers: Acknowledgements) -> Acknowledgements:
    """Later layers win per revision and rule."""
    merged: Acknowledgements = {}
    for layer in layers:
        for revision, rules in layer.items():
            merged.setdefault(revision, {}).update(rules)
    return merged
