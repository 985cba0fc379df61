"""Offline review of Alembic revisions for a team's CI: the alembic_lint module's review, no database needed.

Exit status: 0 nothing blocks, 1 a finding blocks (an unacknowledged error under the policy), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import ansible.module_utils
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(REPO / "module_utils"))

from ansible.module_utils.fleet.core.common import FleetError  # noqa: E402
from ansible.module_utils.fleet.review.lint import lint  # noqa: E402

OFFLINE_URLS = {"postgresql": "postgresql://review@localhost/review", "sqlite": "sqlite:///review.db"}
EXIT_OK, EXIT_BLOCKED, EXIT_BAD_INPUT = 0, 1, 2


def environment_policy(environment: str) -> tuple[dict[str, str], bool]:
    """fleet_review_rules and fleet_review_block of inventory/group_vars/all.yml and <environment>.yml."""
    rules: dict[str, str] = {}
    block = False
    found = False
    for name in ("all", environment):
        path = REPO / "inventory" / "group_vars" / ("%s.yml" % name)
        if not path.is_file():
            continue
        found = found or name == environment
        data = yaml.safe_load(path.read_text()) or {}
        given_rules = data.get("fleet_review_rules", {})
        if not isinstance(given_rules, dict):
            raise FleetError("%s: fleet_review_rules must be a mapping of rule to level." % path)
        rules.update({str(k): str(v) for k, v in given_rules.items()})
        block = bool(data.get("fleet_review_block", block))
    if not found:
        raise FleetError("--env %s: there is no inventory/group_vars/%s.yml; give local, dev or prod." % (environment, environment))
    return rules, block


def parse_rules(items: list[str]) -> dict[str, str]:
    rules: dict[str, str] = {}
    for item in items:
        rule, sep, level = item.partition("=")
        if not sep:
            raise FleetError("--rule %s: write it as rule-name=level (error, warning or off)." % item)
        rules[rule.strip()] = level.strip()
    return rules


def review(ini: str, args: argparse.Namespace, rules: dict[str, str], block: bool) -> dict[str, Any]:
    params: dict[str, Any] = {
        "config": ini,
        "project_dir": None,
        "ini_section": "alembic",
        "url": args.url or OFFLINE_URLS[args.dialect],
        "password": None,
        "connect_timeout": 10,
        "target": args.to,
        "offline": True,
        "from_revision": args.from_revision,
        "rules": rules,
        "block": block,
        "acknowledge": None,  # fleet-review.yml beside each alembic.ini is read by the review itself
    }
    result: dict[str, Any] = {"project": ini}
    lint(params, True, False, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/review", description=__doc__)
    parser.add_argument("projects", nargs="*", help="alembic.ini files (default: migrations/*/alembic.ini)")
    parser.add_argument("--dialect", choices=sorted(OFFLINE_URLS), default="postgresql", help="SQL dialect to render (default postgresql)")
    parser.add_argument("--url", help="a password-free SQLAlchemy URL naming the dialect instead (never connected to)")
    parser.add_argument("--from", dest="from_revision", default="base", help="revision the databases are at (default base)")
    parser.add_argument("--to", default="head", help="revision to review up to (default head)")
    parser.add_argument("--env", help="take the rule levels and blocking from inventory/group_vars/<env>.yml (e.g. prod)")
    parser.add_argument("--rule", action="append", default=[], help="rule-name=error|warning|off, over the policy (repeatable)")
    parser.add_argument("--no-block", action="store_true", help="report only: errors do not set the exit status")
    parser.add_argument("--json", default="-", help="write the JSON report here (default: standard output)")
    args = parser.parse_args(argv)
    try:
        rules, block = environment_policy(args.env) if args.env else ({}, True)
        rules.update(parse_rules(args.rule))
        block = block and not args.no_block
        projects = args.projects or sorted(str(p) for p in (REPO / "migrations").glob("*/alembic.ini"))
        if not projects:
            raise FleetError("no alembic.ini given and none under migrations/: name the projects to review.")
        results = [review(str(Path(ini).resolve()), args, rules, block) for ini in projects]
    except FleetError as exc:
        print("review: %s" % exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    report = {"block": block, "rules": rules, "blocked": any(r["blocked"] for r in results), "projects": results}
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.json == "-":
        print(text)
    else:
        Path(args.json).write_text(text + "\n")
    for result in results:
        summary = result["summary"]
        print(
            "%s: %d revision(s), %d error(s), %d warning(s), %d acknowledged"
            % (result["project"], result["pending_count"], summary["errors"], summary["warnings"], summary["acknowledged"]),
            file=sys.stderr,
        )
        for line in result["report"]:
            print("  " + line, file=sys.stderr)
    return EXIT_BLOCKED if report["blocked"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
