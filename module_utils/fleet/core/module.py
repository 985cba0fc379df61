# -*- coding: utf-8 -*-
# The one place where an operation meets AnsibleModule: expected failures
# become one fail_json sentence (with the partial result), bugs keep their
# traceback, and the password is scrubbed from both. Every module also
# registers the passwords a refused URL carries (so that not even
# invocation.module_args at -vvv shows them) and sweeps the password files
# that killed runs of older versions or of systems without memfd left.
from __future__ import annotations

import os
import re
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible.module_utils.fleet.core.common import DECLARE_PACKAGES, FleetError, scrub, sweep_stale_passfiles, url_secrets

Operation = Callable[[dict[str, Any], bool, bool, dict[str, Any]], None]
# (result, check_mode) -> the module's one line; on failure the result also holds failed=True and msg.
Summary = Callable[[dict[str, Any], bool], str]


# ansible-core names Python classes in a failed conversion: "<class 'ansible._internal..._AnsibleTaggedDict'>".
_CLASS_IN_MESSAGE = re.compile(r"<class '(?:[\w.]*\.)?(?:_AnsibleTagged|_AnsibleLazyTemplate)?(\w+)'>")
_KINDS = {"dict": "a mapping", "str": "a string", "int": "a number", "float": "a number", "bool": "a boolean", "list": "a list", "nonetype": "nothing"}


def plain_type_message(msg: Any) -> Any:
    """An argument error of ansible-core in words an operator knows: 'a mapping', not '_AnsibleTaggedDict'."""
    if not isinstance(msg, str) or "<class '" not in msg:
        return msg
    text = _CLASS_IN_MESSAGE.sub(lambda match: _kind(match.group(1)), msg)
    if "cannot be converted to a list" in text:
        text += ": write it as a YAML list (each item on its own line, starting with '- ')"
    return text


def _kind(class_name: str) -> str:
    name = class_name.lstrip("_")
    return _KINDS.get(name, _KINDS.get(name.lower(), name))


class FleetModule(AnsibleModule):
    """AnsibleModule whose argument errors name types as an operator knows them (see plain_type_message)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

    def fail_json(self, msg: str, **kwargs: Any) -> NoReturn:
        super().fail_json(msg=plain_type_message(msg), **kwargs)


def run_module(
    module: AnsibleModule,
    operation: Operation,
    import_error: str | None = None,
    libraries: str = "alembic and SQLAlchemy",
    summary: Summary | None = None,
    summary_key: str = "summary",
) -> None:
    """Run operation with the module's params and exit with its result; `summary` writes the result's one line
    under `summary_key` (a module whose `summary` is already a dict of counts keeps it and names the line otherwise)."""
    hide_url_passwords(module)
    sweep_stale_passfiles()
    if import_error:
        module.fail_json(msg=missing_required_lib(libraries), exception=import_error)
    result: dict[str, Any] = {"changed": False}
    password = module.params.get("password")
    check_mode = bool(module.check_mode)

    def fail(msg: str, **extra: Any) -> NoReturn:
        _summarise(result, summary, summary_key, check_mode, password, msg)
        module.fail_json(msg=msg, **extra, **result)

    try:
        operation(module.params, check_mode, bool(module._diff), result)
    except FleetError as exc:
        fail(scrub(str(exc), password))
    except Exception as exc:  # a bug, not an input problem: keep the traceback
        site = project_site(exc)
        if site is not None:
            fail(scrub(project_error_message(exc, site), password))
        fail(
            scrub("unexpected %s: %s" % (type(exc).__name__, exc), password),
            exception=scrub(traceback.format_exc(), password),
        )
    _summarise(result, summary, summary_key, check_mode, password)
    module.exit_json(**result)


def _summarise(result: dict[str, Any], summary: Summary | None, key: str, check_mode: bool, password: str | None, failure: str | None = None) -> None:
    """Set result[key] to the module's one line. A bug in the line must not turn a run that changed the database
    into a failure (the role would then undo it), so it leaves a note in the line instead of raising."""
    if summary is None:
        return
    seen = dict(result, failed=True, msg=failure) if failure is not None else result
    try:
        line = summary(seen, check_mode)
    except Exception as exc:  # see the docstring
        line = "%s (no summary: %s: %s)" % ("failed" if failure is not None else "changed" if result.get("changed") else "ok", type(exc).__name__, exc)
    result[key] = scrub(" ".join(line.split()), password)


def hide_url_passwords(module: AnsibleModule) -> None:
    """Register every password written into a `url` option (also in list entries) as a no_log value.

    The URL is refused, but Ansible returns the module's arguments with the
    failure (invocation.module_args, shown at -vvv): only no_log values are
    masked there.
    """
    for url in _urls(module.params):
        module.no_log_values.update(url_secrets(url))


def _urls(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "url":
                yield item
            else:
                yield from _urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from _urls(item)


def project_site(exc: BaseException) -> tuple[str, int] | None:
    """(file, line) of the project's own code (env.py, a helper it imports) where exc was raised, when the error
    came from there after passing through alembic-fleet; None for a failure of ours or of a library."""
    ours = project = -1
    frames: list[tuple[str, int]] = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    for index, (filename, _line) in enumerate(frames):
        if _is_ours(filename):
            ours = index
        elif not _is_installed(filename):
            project = index
    if project <= ours or ours < 0:
        return None
    return frames[project]


def project_error_message(exc: BaseException, site: tuple[str, int]) -> str:
    filename, line = site
    detail = " ".join(str(exc).split()) or "(no message)"
    what = "the project's env.py" if os.path.basename(filename) == "env.py" else "the project's code"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return "%s (%s line %d) imports %s, which is not installed in the Python that runs the module (%s): %s" % (
            what,
            filename,
            line,
            exc.name,
            sys.executable,
            DECLARE_PACKAGES,
        )
    return "%s raised %s: %s (%s line %d): fix it there; alembic-fleet runs it for every command of this project." % (
        what,
        type(exc).__name__,
        detail,
        filename,
        line,
    )


def _is_ours(filename: str) -> bool:
    # In a run, module_utils are imported from AnsiballZ's payload zip; in tests, from the checkout.
    return "/module_utils/fleet/" in filename and filename.endswith(".py")


def _is_installed(filename: str) -> bool:
    """Python's own files and installed packages (alembic, SQLAlchemy, ansible), or code with no file."""
    if filename.startswith("<"):
        return True
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *(p for p in sysconfig.get_paths().values() if p)}
    return "/site-packages/" in filename or "/dist-packages/" in filename or any(filename.startswith(root + os.sep) for root in roots if root)
