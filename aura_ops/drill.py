"""Fire drills: break the sandbox on purpose and check that the runbook names the cause.

``run_drill("high-error-rate")`` starts the sandbox (service + PostgreSQL), drives a baseline of
real traffic, injects the runbook's fault, keeps the traffic going while the runbook runs
against the sandbox, stops everything it started, and judges the verdict: with the fault it
must be WARNING or CRITICAL and name the cause (every word of the fault's ``expect``); without
it, it must be OK.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import papermill

from aura_ops.errors import ConfigError
from aura_ops.findings import Status
from aura_ops.runner import RunResult, resolve_runbook, run_runbook
from aura_ops.sandbox import FAULTS, Fault, Sandbox, faults_for

__all__ = ["DrillResult", "run_drill"]


@dataclasses.dataclass(frozen=True)
class DrillResult:
    """What a drill injected, what the runbook concluded, and whether that was right."""

    runbook: str
    fault: Fault | None
    run: RunResult
    named: tuple[str, ...]
    missing: tuple[str, ...]
    seconds: float

    @property
    def status(self) -> Status:
        return self.run.verdict.status

    @property
    def passed(self) -> bool:
        if self.fault is None:
            return self.status == Status.OK
        return self.status >= Status.WARNING and not self.missing


def _said(run: RunResult) -> str:
    """The text a drill judges: the verdict headline and the top findings' summaries."""
    parts = [run.verdict.headline, *(f.summary for f in run.verdict.top)]
    return "\n".join(parts)


def run_drill(
    runbook: str,
    *,
    fault: str | None = "",
    output_root: str | Path | None = None,
    baseline_s: float = 4.0,
    fault_s: float = 6.0,
    rps: float = 30.0,
    progress: bool = False,
    say: Callable[[str], None] = lambda _msg: None,
) -> DrillResult:
    """Run one drill. ``fault=""`` picks the runbook's first fault; ``None`` injects nothing."""
    path = resolve_runbook(runbook)
    chosen: Fault | None = None
    if fault == "":
        options = faults_for(runbook)
        if not options:
            raise ConfigError(f"no fault in the catalogue exercises {runbook!r}")
        chosen = options[0]
    elif fault is not None:
        if fault not in FAULTS:
            raise ConfigError(f"unknown fault {fault!r}", hint=f"faults: {', '.join(FAULTS)}")
        chosen = FAULTS[fault]
    declared = papermill.inspect_notebook(str(path))
    t0 = time.monotonic()
    say("starting the sandbox (service + PostgreSQL)")
    with Sandbox() as sandbox:
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        sandbox.start_traffic(rps=rps, seed=7)
        say(f"baseline traffic for {baseline_s:g} s at {rps:g} req/s")
        time.sleep(baseline_s)
        if chosen is not None:
            sandbox.inject(chosen.name)
            say(f"injected fault {chosen.name}: {chosen.summary}")
        time.sleep(fault_s)
        params = {k: v for k, v in sandbox.environment().items() if k in declared}
        if "window_start" in declared:
            params["window_start"] = start.isoformat()
        say(f"running runbook {runbook}")
        run = run_runbook(
            runbook, params=params, output_root=output_root, trigger="drill", progress=progress,
            extra_env=sandbox.kernel_env(),
        )  # fmt: skip
    said = _said(run)
    expect = chosen.expect if chosen else ()
    if chosen is not None and chosen.runbook != runbook:  # a router (triage) names the runbook
        expect = (chosen.runbook,)
    named = tuple(w for w in expect if w in said)
    missing = tuple(w for w in expect if w not in said)
    return DrillResult(runbook, chosen, run, named, missing, time.monotonic() - t0)
