# -*- coding: utf-8 -*-
# The one place where an operation meets AnsibleModule: expected failures
# become one fail_json sentence (with the partial result), bugs keep their
# traceback, and the password is scrubbed from both. Every module also
# registers the passwords a refused URL carries (so that not even
# invocation.module_args at -vvv shows them) and sweeps the password files
# that killed runs of older versions or of systems without memfd left.
from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible.module_utils.fleet_common import FleetError, scrub, sweep_stale_passfiles, url_secrets

Operation = Callable[[dict[str, Any], bool, bool, dict[str, Any]], None]


def run_module(module: AnsibleModule, operation: Operation, import_error: str | None = None, libraries: str = "alembic and SQLAlchemy") -> None:
    hide_url_passwords(module)
    sweep_stale_passfiles()
    if import_error:
        module.fail_json(msg=missing_required_lib(libraries), exception=import_error)
    result: dict[str, Any] = {"changed": False}
    password = module.params.get("password")
    try:
        operation(module.params, module.check_mode, bool(module._diff), result)
    except FleetError as exc:
        module.fail_json(msg=scrub(str(exc), password), **result)
    except Exception as exc:  # a bug, not an input problem: keep the traceback
        module.fail_json(
            msg=scrub("unexpected %s: %s" % (type(exc).__name__, exc), password),
            exception=scrub(traceback.format_exc(), password),
            **result,
        )
    module.exit_json(**result)


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
