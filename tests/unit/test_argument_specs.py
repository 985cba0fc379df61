"""roles/fleet/meta/argument_specs.yml agrees with the role's defaults, its task files and the playbooks.

Ansible validates an entry point's spec before the first task of that entry point, so the spec is only a guard if
every entry point has one and it names every role variable its tasks use. What "uses" means here: the task files
an entry point runs (following include_tasks / import_tasks, each entry point's per-database file among them) mention
the variable anywhere in their YAML values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "fleet"
TASKS = ROLE / "tasks"
FILTERS = ROLE / "filter_plugins"
SPEC_FILE = ROLE / "meta" / "argument_specs.yml"
DEFAULTS_FILE = ROLE / "defaults" / "main.yml"

ROLE_VARIABLE = re.compile(r"\b(?:__)?fleet_[a-z0-9_]+\b")
INCLUDES = ("ansible.builtin.include_tasks", "ansible.builtin.import_tasks", "include_tasks", "import_tasks")
ROLE_INCLUDES = ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role")
TYPES = {"str", "bool", "int", "float", "list", "dict", "path", "raw"}


class Unsafe(str):
    """A scalar tagged !unsafe: Ansible never templates it."""


class SpecLoader(yaml.SafeLoader):
    pass


def construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Unsafe:
    assert isinstance(node, yaml.ScalarNode), "!unsafe on a %s" % type(node).__name__
    return Unsafe(loader.construct_scalar(node))


SpecLoader.add_constructor("!unsafe", construct_unsafe)


def load_specs() -> dict[str, Any]:
    # SpecLoader is a SafeLoader plus a constructor for !unsafe, which yields a plain string.
    specs: dict[str, Any] = yaml.load(SPEC_FILE.read_text(), Loader=SpecLoader)["argument_specs"]  # noqa: S506
    return specs


SPECS = load_specs()
ALL_DEFAULTS: dict[str, Any] = yaml.safe_load(DEFAULTS_FILE.read_text())
# The settings (fleet_*) and what the tasks read derived from them (__fleet_*, e.g. __fleet_backup_root: the absolute
# path of fleet_backup_root); a setting that is unset by default (fleet_project_root) is in a derived one's template.
DEFAULTS = {name: value for name, value in ALL_DEFAULTS.items() if not name.startswith("__")}
DERIVED = {name: set(re.findall(r"\b(?:__)?fleet_[a-z0-9_]+\b", value)) for name, value in ALL_DEFAULTS.items() if name.startswith("__")}
SETTINGS = set(DEFAULTS) | {found for sources in DERIVED.values() for found in sources if not found.startswith("__")}


def settings_behind(names: set[str]) -> set[str]:
    """The settings the names stand for: a derived name stands for the settings (and derived names) it is built from."""
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(DERIVED.get(name, ()))
    return seen & SETTINGS


# ------------------------------------------------------------------------------------------- the role's task files


def scalars(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from scalars(value)
    elif isinstance(node, list):
        for value in node:
            yield from scalars(value)
    elif node is not None:
        yield str(node)


def tasks_in(node: Any) -> Iterator[dict[str, Any]]:
    for task in node or []:
        if isinstance(task, dict):
            yield task
            for section in ("block", "rescue", "always"):
                yield from tasks_in(task.get(section))


def run_tree(name: str, context: dict[str, str] | None = None, seen: set[Any] | None = None) -> tuple[set[str], set[str]]:
    """(task files, fleet_* and __fleet_* names) of tasks/<name>, following includes. A file name from a variable ("{{ x }}") would
    be resolved from the vars of the including tasks, unresolvable ones left out; test_every_include_names_its_file
    keeps there being none."""
    context = context or {}
    seen = seen if seen is not None else set()
    key = (name, tuple(sorted(context.items())))
    if key in seen:
        return set(), set()
    seen.add(key)
    data = yaml.safe_load((TASKS / name).read_text())
    files, names = {name}, {found for text in scalars(data) for found in ROLE_VARIABLE.findall(text)}
    for task in tasks_in(data):
        for action in INCLUDES:
            if action not in task:
                continue
            target = task[action] if isinstance(task[action], str) else task[action]["file"]
            inner = {**context, **{k: v for k, v in (task.get("vars") or {}).items() if isinstance(v, str)}}

            def value_of(match: re.Match[str], inner: dict[str, str] = inner) -> str:
                return inner.get(match.group(1), "\0")

            resolved = re.sub(r"\{\{\s*(\w+)\s*\}\}", value_of, target)
            if "\0" in resolved:
                continue
            assert (TASKS / resolved).is_file(), "%s includes %s, which does not exist" % (name, resolved)
            more_files, more_names = run_tree(resolved, inner, seen)
            files |= more_files
            names |= more_names
    return files, names


def entry_points() -> set[str]:
    """Task files that no other task file includes: the role's entry points."""
    all_files = {p.name for p in TASKS.glob("*.yml")}
    included = set()
    for name in all_files:
        included |= run_tree(name)[0] - {name}
    return {Path(name).stem for name in all_files - included}


def used_variables(entry_point: str) -> set[str]:
    """The settings (those of defaults/main.yml, and those behind its derived names) the entry point's task files use."""
    return settings_behind(run_tree("%s.yml" % entry_point)[1])


def conversions() -> dict[str, set[str]]:
    """How the tasks convert each role variable: fleet_x | bool / int / float."""
    found: dict[str, set[str]] = {}
    for path in TASKS.glob("*.yml"):
        for name, filt in re.findall(r"\b(fleet_[a-z0-9_]+)\s*\|\s*(bool|int|float)\b", path.read_text()):
            found.setdefault(name, set()).add(filt)
    return found


def role_uses(node: Any) -> Iterator[str]:
    """Entry points of the fleet role that a playbook (or play list) uses."""
    if isinstance(node, dict):
        for action in ROLE_INCLUDES:
            if action in node and isinstance(node[action], dict) and node[action].get("name") == "fleet":
                yield node[action].get("tasks_from", "main")
        for role in node.get("roles") or []:
            if (role if isinstance(role, str) else role.get("role", role.get("name"))) == "fleet":
                yield "main"
        for value in node.values():
            yield from role_uses(value)
    elif isinstance(node, list):
        for value in node:
            yield from role_uses(value)


def playbook_entry_points() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    books = [*sorted(REPO.glob("*.yml")), *sorted((ROLE / "molecule").rglob("*.yml"))]
    for book in books:
        for entry_point in role_uses(yaml.safe_load(book.read_text())):
            used.setdefault(entry_point, set()).add(str(book.relative_to(REPO)))
    return used


# ------------------------------------------------------------------------------------------------------- the tests


def test_the_analysis_finds_the_known_entry_points_and_includes() -> None:
    # The helpers below decide what the other tests check: make sure they see what is there.
    assert {"main", "rollback", "stamp", "status", "review_report", "plan_run"} <= entry_points()
    main = {"validate.yml", "preflight_database.yml", "resolve_database.yml", "preflight.yml", "upgrade_host.yml", "finish_database.yml", "recover.yml"}
    assert main <= run_tree("main.yml")[0]
    assert "migrate_database.yml" in run_tree("backup_run.yml")[0], "backup_run runs the migrate procedure first"
    assert "fleet_rollback_strategy" in used_variables("rollback")
    assert "fleet_rollback_strategy" not in used_variables("main")
    assert {"main", "plan_run", "rollback", "status", "status_report"} <= set(playbook_entry_points())


def test_every_include_names_its_file() -> None:
    # A file name from a variable hides the procedure from readers and linters alike (ansible-lint cannot follow it).
    for path in sorted(TASKS.glob("*.yml")):
        for task in tasks_in(yaml.safe_load(path.read_text())):
            for action in INCLUDES:
                if action in task:
                    target = task[action] if isinstance(task[action], str) else task[action]["file"]
                    assert "{" not in target and (TASKS / target).is_file(), "%s includes %r" % (path.name, target)


def test_every_entry_point_has_a_spec() -> None:
    assert set(SPECS) == entry_points(), "argument_specs.yml entry points vs task files that nothing includes"


def test_every_entry_point_used_by_a_playbook_has_a_spec() -> None:
    used = playbook_entry_points()
    missing = {entry_point: books for entry_point, books in used.items() if entry_point not in SPECS}
    assert not missing, "entry points without an argument spec: %s" % missing
    for entry_point in used:
        assert (TASKS / ("%s.yml" % entry_point)).is_file(), entry_point


@pytest.mark.parametrize("entry_point", sorted(SPECS))
def test_entry_point_spec_lists_exactly_the_role_variables_its_tasks_use(entry_point: str) -> None:
    spec = SPECS[entry_point]
    assert spec.get("short_description"), entry_point
    assert (TASKS / ("%s.yml" % entry_point)).is_file(), "a spec for tasks/%s.yml, which does not exist" % entry_point
    options = set(spec.get("options") or {})
    used = used_variables(entry_point)
    assert not used - options, "%s uses %s, but its spec does not list them" % (entry_point, sorted(used - options))
    assert not options - used, "%s's spec lists %s, which its tasks do not use" % (entry_point, sorted(options - used))


@pytest.mark.parametrize("entry_point", sorted(SPECS))
def test_spec_options_match_defaults(entry_point: str) -> None:
    for name, option in (SPECS[entry_point].get("options") or {}).items():
        assert option.get("description"), name
        assert option.get("type") in TYPES, name
        if name not in DEFAULTS:
            # Unset unless given (fleet_project_root): no default to state, and one derived name reads it.
            assert name in SETTINGS and "default" not in option, "%s: %s is not in defaults/main.yml" % (entry_point, name)
            continue
        assert "default" in option, "%s: %s has no default" % (entry_point, name)
        default = option["default"]
        assert default == DEFAULTS[name] and type(default) in (type(DEFAULTS[name]), Unsafe), (
            "%s: the default of %s is %r in the spec and %r in defaults/main.yml" % (entry_point, name, default, DEFAULTS[name])
        )
        if option["type"] == "list":
            assert option.get("elements") in TYPES, "%s: list %s has no elements type" % (entry_point, name)
        if "choices" in option:
            assert option["choices"], name


def test_every_role_variable_is_in_some_entry_point() -> None:
    specified = {name for spec in SPECS.values() for name in spec.get("options") or {}}
    assert not set(DEFAULTS) - specified, "role variables in no entry point's spec: %s" % sorted(set(DEFAULTS) - specified)


def test_an_option_is_specified_the_same_everywhere() -> None:
    seen: dict[str, Any] = {}
    for entry_point, spec in SPECS.items():
        for name, option in (spec.get("options") or {}).items():
            assert seen.setdefault(name, option) == option, "%s differs in %s" % (name, entry_point)


def test_templated_defaults_are_never_templated_by_the_validation() -> None:
    # Ansible templates the spec (it is a task argument) and prints it whole when the validation fails: a templated
    # default of fleet_databases would print every password of the host. !unsafe keeps each one literal.
    for spec in SPECS.values():
        for name, option in (spec.get("options") or {}).items():
            if "{{" in str(option.get("default", "")):
                assert isinstance(option["default"], Unsafe), "%s's default must be tagged !unsafe" % name
    text = SPEC_FILE.read_text()
    for line in text.splitlines():
        if "{{" in line and not line.lstrip().startswith("#"):
            assert "!unsafe" in line, "a template outside an !unsafe default is templated at validation: %s" % line


def test_types_match_how_the_tasks_convert_the_variables() -> None:
    options = {name: option for spec in SPECS.values() for name, option in (spec.get("options") or {}).items()}
    for name, filters in conversions().items():
        if name not in options:
            continue
        assert filters == {options[name]["type"]}, "%s: spec type %s, the tasks use | %s" % (name, options[name]["type"], filters)


def test_choices() -> None:
    options = {name: option for spec in SPECS.values() for name, option in (spec.get("options") or {}).items()}
    assert options["fleet_rollback_strategy"]["choices"] == ["downgrade", "restore", "auto"]
    assert options["fleet_backup_compress_level"]["choices"] == list(range(10))


def test_database_entries() -> None:
    databases = SPECS["main"]["options"]["fleet_databases"]
    assert (databases["type"], databases["elements"]) == ("list", "dict")
    fields = databases["options"]
    # Every key the task files (fleet_db.<key>) and the role's filters (entry["<key>"], entry.get("<key>")) read from
    # an entry is specified, and nothing else.
    read = {key for path in TASKS.glob("*.yml") for key in re.findall(r"\bfleet_db\.([a-z_]+)", path.read_text())}
    read |= {key for path in FILTERS.glob("*.py") for key in re.findall(r"\bentry(?:\.get\(|\[)\"([a-z_]+)\"", path.read_text())}
    assert set(fields) == read
    assert {k for k, v in fields.items() if v.get("required")} == {"name", "alembic_ini", "url"}
    assert fields["password"]["no_log"] is True
    assert fields["drift_allow"]["elements"] == "str"
    for key, field in fields.items():
        assert field.get("description") and field.get("type") in TYPES, key


def spec_errors(spec: dict[str, Any], parameters: dict[str, Any]) -> list[str]:
    result = ArgumentSpecValidator(spec).validate(parameters)  # type: ignore[no-untyped-call]
    return list(result.error_messages)


def example_databases() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((REPO / "inventory" / "host_vars").glob("*.yml")):
        for entry in yaml.safe_load(path.read_text()).get("fleet_databases", []):
            yield path.name, entry
    molecule = yaml.safe_load((ROLE / "molecule" / "default" / "molecule.yml").read_text())
    for entry in molecule["provisioner"]["inventory"]["group_vars"]["all"]["scenario_databases"]:
        yield "molecule.yml", entry


def test_the_spec_accepts_the_repository_s_own_database_entries_and_rejects_broken_ones() -> None:
    spec = {"fleet_databases": SPECS["main"]["options"]["fleet_databases"]}
    entries = [entry for _, entry in example_databases()]
    assert len(entries) >= 8
    assert not spec_errors(spec, {"fleet_databases": entries})
    typo = dict(entries[0])
    typo["alembic_in"] = typo.pop("alembic_ini")
    errors = spec_errors(spec, {"fleet_databases": [typo]})
    assert any("alembic_ini" in e for e in errors) and any("alembic_in." in e for e in errors), errors
