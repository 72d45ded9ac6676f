"""Run a runbook: papermill with merged parameters, a wall-clock limit, and the evidence output.

``run_runbook("high-error-rate", env="prod", params={"route": "/api/render"})`` writes::

    outputs/2026-11-23/101523-high-error-rate-3f9c/
      notebook.ipynb    executed, redacted
      report.html       verdict and findings first, code hidden, plots inline
      findings.json     runbook, parameters (redacted), window, verdict, findings, versions

Parameters are merged in order: the notebook's defaults, the environment
(``parameters/environments/NAME.yaml``), then explicit ones. The notebook executes in a child
process (its own session) so that a whole-run deadline can be enforced by killing it and its
kernel; whatever it had written is still turned into a report, with an ``UNKNOWN`` finding
saying why the run is incomplete. A long-running caller (``aura-ops serve``) can hand it a
:class:`~aura_ops.kernelpool.KernelPool` of executors started ahead of time instead.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat

from aura_ops.config import load_environment, project_root, window
from aura_ops.errors import ConfigError, RunbookError
from aura_ops.findings import Finding, Status, Verdict, roll_up
from aura_ops.kernelpool import KernelPool, default_pool
from aura_ops.redact import Redactor, default_redactor
from aura_ops.report import extract_findings, extract_verdict, render_report
from aura_ops.severity import assess

__all__ = [
    "RunResult",
    "RunbookInfo",
    "coerce_parameter",
    "list_runbooks",
    "resolve_runbook",
    "run_runbook",
]

RUNBOOK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Parameters the runner fills in when a runbook declares them.
STANDARD_PARAMETERS = ("run_id", "trigger", "env", "window_start", "window_end")


@dataclasses.dataclass(frozen=True)
class RunbookInfo:
    """A runbook as ``aura-ops list`` shows it."""

    name: str
    path: Path
    title: str
    summary: str
    parameters: Mapping[str, Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of one run: where its evidence is and what it concluded."""

    run_dir: Path
    verdict: Verdict
    findings: tuple[Finding, ...]
    record: Mapping[str, Any]

    @property
    def exit_code(self) -> int:
        return self.verdict.status.exit_code

    @property
    def report(self) -> Path:
        return self.run_dir / "report.html"


def _notebooks_dir(root: Path | None) -> Path:
    return (root or project_root()) / "notebooks"


def resolve_runbook(name: str, root: Path | None = None) -> Path:
    """The notebook of runbook ``name``; unknown or malformed names raise :class:`RunbookError`."""
    known = sorted(p.stem for p in _notebooks_dir(root).glob("*.ipynb"))
    if not RUNBOOK_NAME.match(name or ""):
        raise RunbookError(
            f"invalid runbook name {name!r}", hint=f"runbooks: {', '.join(known) or 'none found'}"
        )
    path = _notebooks_dir(root) / f"{name}.ipynb"
    if not path.is_file():
        raise RunbookError(
            f"unknown runbook {name!r}", hint=f"runbooks: {', '.join(known) or 'none found'}"
        )
    return path


def _describe(nb: nbformat.NotebookNode) -> tuple[str, str]:
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.strip():
            lines = [ln.strip() for ln in cell.source.splitlines()]
            title = next((ln.lstrip("# ") for ln in lines if ln.startswith("#")), "")
            text = next((ln for ln in lines if ln and not ln.startswith(("#", "|", ">", "-"))), "")
            return title, re.sub(r"[*_`]", "", text)
    return "", ""


def list_runbooks(root: Path | None = None) -> list[RunbookInfo]:
    """Every runbook with its title, one-line summary and parameters (read from the notebooks)."""
    import papermill

    out = []
    for path in sorted(_notebooks_dir(root).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        title, summary = _describe(nb)
        params = papermill.inspect_notebook(str(path))
        out.append(RunbookInfo(path.stem, path, title, summary, params))
    return out


def coerce_parameter(name: str, raw: Any, spec: Mapping[str, Any] | None) -> Any:
    """Convert a command-line value to the type of the parameter's default.

    ``-p lookback_minutes=abc`` against an ``int`` default raises :class:`ConfigError`.
    """
    if not isinstance(raw, str) or spec is None:
        return raw
    kind = str(spec.get("inferred_type_name", "None")).lower()
    if kind == "none":  # unannotated: the type of the literal default
        try:
            kind = type(ast.literal_eval(str(spec.get("default", "None")))).__name__
        except (ValueError, SyntaxError):
            kind = "str"
    try:
        if kind == "bool":
            low = raw.strip().lower()
            if low in ("true", "yes", "1", "on"):
                return True
            if low in ("false", "no", "0", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"parameter {name}: {raw!r} is not a valid {kind}") from None
    return raw


def _merge_parameters(
    path: Path, env: str | None, params: Mapping[str, Any], root: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    import papermill

    declared = papermill.inspect_notebook(str(path))
    merged: dict[str, Any] = {}
    if env:
        for key, value in load_environment(env, root).items():
            if key in declared:  # an environment serves many runbooks; each takes its own
                merged[key] = value
    for key, value in params.items():
        if not PARAM_NAME.match(key):
            raise ConfigError(f"invalid parameter name {key!r}")
        if key not in declared:
            raise ConfigError(
                f"runbook {path.stem!r} has no parameter {key!r}",
                hint=f"parameters: {', '.join(declared) or 'none'}",
            )
        merged[key] = coerce_parameter(key, value, declared[key])
    return merged, dict(declared)


def _declared_defaults(declared: Mapping[str, Any]) -> dict[str, Any]:
    """The literal defaults of a runbook's parameters cell (``token_env = "X"`` -> X)."""
    out: dict[str, Any] = {}
    for key, spec in declared.items():
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError):
            out[key] = ast.literal_eval(str(spec.get("default", "")))
    return out


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for dist in ("aura-ops", "papermill", "pandas", "nbclient", "ipykernel"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist.replace("-", "_")] = metadata.version(dist)
    return out


def _execute(
    src: Path,
    dst: Path,
    parameters: Mapping[str, Any],
    *,
    timeout_s: float,
    progress: bool,
    extra_env: Mapping[str, str],
    kernel_pool: KernelPool | None = None,
) -> dict[str, Any]:
    """Execute in a child process with a whole-run deadline. Returns the execution status.

    With ``kernel_pool``, a warm executor of the pool runs it (same deadline, single use,
    :mod:`aura_ops.kernelpool`); when the pool has none to give, the cold path below does.
    """
    work = dst.parent
    spec = {
        "input": str(src),
        "output": str(dst),
        "parameters": dict(parameters),
        "cwd": str(src.parent),
        "progress": progress,
        "error_path": str(work / "error.json"),
    }
    if kernel_pool is not None and not progress:
        with kernel_pool.lease(extra_env) as warm:
            if warm is not None:
                return {**warm.run(spec, extra_env, timeout_s), "kernel": "warm"}
    (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, **extra_env}
    env.setdefault("MPLCONFIGDIR", str(Path(tempfile.gettempdir()) / "aura-ops-mpl"))
    cmd = [sys.executable, "-m", "aura_ops._execute", str(work / "spec.json")]
    proc = subprocess.Popen(
        cmd,
        env=env,
        start_new_session=True,
        stdout=None if progress else subprocess.DEVNULL,
        stderr=None if progress else subprocess.PIPE,
    )
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its kernel
        proc.wait(timeout=10)
        return {
            "status": "timeout",
            "error": f"run exceeded its {timeout_s:g} s deadline and "
            "was stopped; the findings below are what it had recorded",
        }
    if proc.returncode == 0:
        return {"status": "completed"}
    err_file = work / "error.json"
    if err_file.is_file():
        return {"status": "failed", **json.loads(err_file.read_text(encoding="utf-8"))}
    tail = (stderr or b"").decode(errors="replace").strip().splitlines()[-5:]
    return {"status": "failed", "error": " | ".join(tail) or f"exit code {proc.returncode}"}


def _execution_finding(execution: Mapping[str, Any], runbook: str) -> Finding | None:
    status = execution.get("status")
    if status == "completed":
        return None
    what = "did not finish" if status == "timeout" else "stopped on an error"
    return Finding(
        check="runbook.execution",
        subject=runbook,
        status=Status.UNKNOWN,
        summary=f"Runbook {what}: {execution.get('error', '')}"[:500],
        observed=status,
        expected="completed",
        hint="Cells after the failure did not run: their "
        "checks are missing from this report. Open the notebook to see where it stopped.",
    )


def run_runbook(
    name: str,
    *,
    env: str | None = None,
    params: Mapping[str, Any] | None = None,
    output_root: str | Path | None = None,
    trigger: str = "manual",
    timeout_s: float = 600.0,
    progress: bool = False,
    root: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    kernel_pool: KernelPool | None = None,
    incident: str | None = None,
) -> RunResult:
    """Execute runbook ``name`` and write its evidence (see module docstring).

    ``incident`` names the incident this run belongs to (``aura-ops run --incident ID``); it
    is recorded in findings.json, where :mod:`aura_ops.incidents` groups runs by it.

    ``kernel_pool`` (or, when None, the pool of ``AURA_OPS_WARM_KERNELS``) runs the notebook
    on a warm kernel: :mod:`aura_ops.kernelpool`.
    """
    path = resolve_runbook(name, root)
    merged, declared = _merge_parameters(path, env, dict(params or {}), root)
    started = dt.datetime.now(dt.UTC)
    run_id = f"{started:%H%M%S}-{name}-{uuid.uuid4().hex[:4]}"
    out_root = Path(output_root or (root or project_root()) / "outputs")
    run_dir = out_root / f"{started:%Y-%m-%d}" / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    standard = {
        "run_id": run_id,
        "trigger": trigger,
        "env": env or "",
        "window_end": started.isoformat(),
    }
    for key, value in standard.items():
        if key in declared and not merged.get(key):
            merged[key] = value
    # the kernel's environment: os.environ plus extra_env (a drill's provider key, a DSN)
    # and every *_env parameter: given, or the runbook's own default
    redactor = default_redactor(
        {**_declared_defaults(declared), **merged}, {**os.environ, **(extra_env or {})}
    )
    # the raw executed notebook may hold secrets: it lives in a private scratch directory and
    # only its redacted copy reaches the run directory
    scratch = Path(tempfile.mkdtemp(prefix="aura-ops-run-"))
    try:
        raw = scratch / "notebook.ipynb"
        t0 = time.monotonic()
        run_env = {"AURA_OPS_TRIGGER": trigger, "AURA_OPS_RUN_ID": run_id, **(extra_env or {})}
        pool = kernel_pool if kernel_pool is not None else default_pool(root)
        execution = _execute(
            path,
            raw,
            merged,
            timeout_s=timeout_s,
            progress=progress,
            extra_env=run_env,
            kernel_pool=pool,
        )
        execution.setdefault("kernel", "cold")  # in findings.json: which path ran it
        duration = time.monotonic() - t0
        nb = nbformat.read(raw, as_version=4) if raw.is_file() else nbformat.read(path, 4)
        record, nb = _evidence(
            nb, name, merged, env, trigger, run_id, started, duration, execution, redactor
        )
        if incident:
            record["incident"] = redactor.text(incident)
        nbformat.write(nb, run_dir / "notebook.ipynb")
        (run_dir / "report.html").write_text(render_report(nb, record), encoding="utf-8")
        (run_dir / "findings.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    findings = tuple(Finding.from_dict(d) for d in record["findings"])
    return RunResult(run_dir, roll_up(findings), findings, record)


def _evidence(
    nb: nbformat.NotebookNode,
    name: str,
    params: Mapping[str, Any],
    env: str | None,
    trigger: str,
    run_id: str,
    started: dt.datetime,
    duration: float,
    execution: Mapping[str, Any],
    redactor: Redactor,
) -> tuple[dict[str, Any], nbformat.NotebookNode]:
    """Redact the executed notebook and build the findings record from it."""
    nb = nbformat.from_dict(redactor.obj(nb))
    findings = extract_findings(nb)
    failure = _execution_finding(execution, name)
    if failure is not None:
        findings.append(failure)
    verdict = roll_up(findings)
    recorded = extract_verdict(nb) or {}
    try:
        severity: dict[str, str] | None = assess(findings).to_dict()
    except ConfigError:
        severity = None
    try:
        start, end = window(
            str(params.get("window_start", "")),
            str(params.get("window_end", "")),
            float(params.get("lookback_minutes", 15) or 15),
        )
        win = {"start": start.isoformat(), "end": end.isoformat()}
    except (ConfigError, ValueError, TypeError):
        win = {}
    title, _ = _describe(nb)
    record = {
        "schema": 1,
        "run_id": run_id,
        "runbook": name,
        "title": title or name,
        "environment": env or "",
        "trigger": trigger,
        "parameters": dict(params),
        "window": win,
        "started_at": started.isoformat(),
        "finished_at": (started + dt.timedelta(seconds=duration)).isoformat(),
        "duration_s": round(duration, 3),
        "execution": dict(execution),
        "verdict": verdict.to_dict(),
        "severity": severity,
        "next_steps": recorded.get("next_steps", []),
        "findings": [f.to_dict() for f in findings],
        "versions": _versions(),
        "files": {"notebook": "notebook.ipynb", "report": "report.html"},
    }
    return redactor.obj(record), nb
