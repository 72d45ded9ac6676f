"""Child process of :func:`aura_ops.runner.run_runbook`: execute one notebook with papermill.

Runs in its own session so the parent can enforce a whole-run deadline by killing the process
group (this process and its kernel). papermill writes the output notebook before raising, so a
failed run still leaves its evidence; the error is summarised in ``error_path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

#: Niceness added to a run's process (and so its kernel) -- ``aura-ops serve`` sets it so that
#: the receiver keeps acknowledging alerts at once while runs use the CPU.
NICE_ENV = "AURA_OPS_RUN_NICE"


def lower_priority() -> None:
    """Apply :data:`NICE_ENV` to this process; the kernel it starts inherits it."""
    try:
        inc = int(os.environ.get(NICE_ENV, "0") or 0)
    except ValueError:
        return
    if inc > 0:
        with contextlib.suppress(OSError):
            os.nice(min(inc, 19))


def execute(spec: dict[str, Any], before: Callable[[], object] | None = None, **kw: Any) -> int:
    """Execute ``spec``'s notebook with papermill (``kw``: more of its arguments, e.g. a warm
    kernel's ``km``); 0, or 1 with the failure summarised in ``spec["error_path"]``. The cold
    child below and a warm executor (:mod:`aura_ops.kernelpool`) both run notebooks here."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        if before is not None:
            before()
        papermill.execute_notebook(
            spec["input"],
            spec["output"],
            parameters=spec["parameters"],
            kernel_name="python3",
            cwd=spec.get("cwd"),
            progress_bar=bool(spec.get("progress")),
            request_save_on_cell_execute=True,
            start_timeout=60,
            **kw,
        )
    except PapermillExecutionError as exc:
        error = {
            "error": f"{exc.ename}: {exc.evalue}",
            "cell_index": exc.cell_index,
            "execution_count": exc.exec_count,
        }
    except Exception as exc:  # kernel died, notebook unreadable, ...
        error = {"error": f"{type(exc).__name__}: {exc}"}
    else:
        return 0
    with open(spec["error_path"], "w", encoding="utf-8") as fh:
        json.dump(error, fh)
    return 1


def main(spec_path: str) -> int:
    lower_priority()
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    warnings.simplefilter("ignore")
    return execute(spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
