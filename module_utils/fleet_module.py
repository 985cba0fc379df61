# -*- coding: utf-8 -*-
# The one place where an operation meets AnsibleModule: expected failures
# become one fail_json sentence (with the partial result), bugs keep their
# traceback, and the password is scrubbed from both.
from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible.module_utils.fleet_common import FleetError, scrub

Operation = Callable[[dict[str, Any], bool, bool, dict[str, Any]], None]


def run_module(module: AnsibleModule, operation: Operation, import_error: str | None = None, libraries: str = "alembic and SQLAlchemy") -> None:
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
