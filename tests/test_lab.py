"""Investigating in JupyterLab: environment preselection, worksheets of runs, reproducible findings.

One real run of the real ``high-error-rate`` runbook against the sandbox with the bad deploy
injected is shared by the worksheet and reproduce tests; the sandbox keeps running (fault on,
traffic flowing) while they re-execute its worksheet and its findings' reproduce calls.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import papermill
import pytest
import yaml
from nbclient import NotebookClient

from aura_ops.cli import main
from aura_ops.config import (
    ENV_VARIABLE,
    PINNED_RUN,
    connect,
    preselected_environment,
    project_root,
)
from aura_ops.display import format_finding
from aura_ops.errors import ConfigError
from aura_ops.findings import Finding, Status
from aura_ops.lab import make_worksheet, reproduce_call, resolve_run
from aura_ops.report import extract_findings, extract_verdict
from aura_ops.runner import RunResult, resolve_runbook, run_runbook
from aura_ops.sandbox import Sandbox

from .conftest import write_runbook

RUNBOOK = "high-error-rate"
NOTEBOOK_MODULES = ("changes", "health", "logs", "metrics")  # what the runbook imports


# --- one real run, its sandbox still running ---------------------------------------------------
@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, RunResult]]:
    """A drill-style run of the real runbook; the broken sandbox keeps serving traffic."""
    declared = papermill.inspect_notebook(str(resolve_runbook(RUNBOOK)))
    out = tmp_path_factory.mktemp("outputs")
    with Sandbox() as sb:
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        sb.start_traffic(rps=30, seed=3)
        time.sleep(2)
        sb.inject("bad-deploy")
        time.sleep(4)
        params = {k: v for k, v in sb.environment().items() if k in declared}
        params["window_start"] = start.isoformat()
        run = run_runbook(
            RUNBOOK, params=params, output_root=out, trigger="drill", extra_env=sb.kernel_env()
        )
        assert run.verdict.status == Status.CRITICAL, run.verdict.headline
        yield sb, run


def _judged(findings: list[Finding] | tuple[Finding, ...]) -> Counter[tuple[str, str, str]]:
    return Counter((f.check, f.subject, f.status.name) for f in findings)


def _digest(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def test_worksheet_rerun_reproduces_the_runs_findings(
    live_run: tuple[Sandbox, RunResult], tmp_path: Path
) -> None:
    """Re-executing a run's worksheet gives the same checks and statuses; evidence is untouched."""
    sb, run = live_run
    before = _digest(run.run_dir)
    sheet = make_worksheet(run.run_dir, dest=tmp_path / "sheet.ipynb")
    nb = nbformat.read(sheet, as_version=4)
    env = {**os.environ, **sb.kernel_env(), "AURA_OPS_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    env.pop(ENV_VARIABLE, None)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=env)
    assert _judged(extract_findings(nb)) == _judged(run.findings)
    assert (extract_verdict(nb) or {})["status"] == "CRITICAL"
    assert _digest(run.run_dir) == before


def test_worksheet_pins_parameters_and_window(
    live_run: tuple[Sandbox, RunResult], tmp_path: Path
) -> None:
    """The worksheet's injected-parameters cell holds the run's parameters and exact window."""
    _, run = live_run
    sheet = make_worksheet(run.run_dir, dest=tmp_path / "sheet.ipynb")
    nb = nbformat.read(sheet, as_version=4)
    pinned = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(pinned) == 1
    namespace: dict[str, Any] = {}
    exec(pinned[0].source, namespace)  # literals only, written by papermill's translator
    window = run.record["window"]
    assert (window["start"], window["end"]) == (namespace["window_start"], namespace["window_end"])
    assert run.record["parameters"]["log_paths"] == namespace["log_paths"]
    assert run.record["run_id"] == namespace[PINNED_RUN]
    assert nb.cells[0].cell_type == "markdown" and run.record["run_id"] in nb.cells[0].source
    assert [o for c in nb.cells for o in c.get("outputs", [])]  # the run's outputs stay visible


def test_existing_worksheet_is_kept(live_run: tuple[Sandbox, RunResult], tmp_path: Path) -> None:
    """Opening a run twice keeps the first working copy (it may hold work) unless overwritten."""
    _, run = live_run
    sheet = tmp_path / "sheet.ipynb"
    make_worksheet(run.run_dir, dest=sheet)
    sheet.write_text("{}")
    assert make_worksheet(run.run_dir, dest=sheet).read_text() == "{}"
    make_worksheet(run.run_dir, dest=sheet, overwrite=True)
    assert nbformat.read(sheet, as_version=4).cells


def test_runs_resolve_by_id_or_path(live_run: tuple[Sandbox, RunResult]) -> None:
    """A run is found by its id under the output root, or by its directory or a file in it."""
    _, run = live_run
    root = run.run_dir.parent.parent
    assert resolve_run(run.record["run_id"], output_root=root) == run.run_dir
    assert resolve_run(run.run_dir / "findings.json") == run.run_dir
    with pytest.raises(ConfigError, match="no run"):
        resolve_run("101010-high-error-rate-beef", output_root=root)
    with pytest.raises(ConfigError, match="not a run directory"):
        resolve_run(root)


def test_reproduce_calls_rerun_each_check_alone(live_run: tuple[Sandbox, RunResult]) -> None:
    """Each finding's reproduce call, as the card shows it, re-runs its check in the notebook."""
    _, run = live_run
    namespace = {m: importlib.import_module(f"aura_ops.{m}") for m in NOTEBOOK_MODULES}
    exec("from aura_ops import *", namespace)
    by_call: dict[str, list[Finding]] = {}
    for f in run.findings:
        by_call.setdefault(reproduce_call(f), []).append(f)
    assert len(by_call) >= 5  # health, metrics, logs, change correlation
    for call, expected in by_call.items():
        again = eval(call, namespace)  # noqa: S307 - our own findings, as a notebook cell would
        got = {(f.check, f.subject): f.status for f in again}
        assert {(f.check, f.subject): f.status for f in expected}.items() <= got.items(), call


def test_cards_show_the_reproduce_call_a_notebook_runs(live_run: tuple[Sandbox, RunResult]) -> None:
    """Every card of the run shows its reproduce call, module-qualified and escaped."""
    _, run = live_run
    for f in run.findings:
        call = reproduce_call(f)
        assert re.match(rf"^({'|'.join(NOTEBOOK_MODULES)})\.check_\w+\(", call), call
        assert call.replace("'", "&#x27;") in format_finding(f)


def test_reproduce_call_qualifies_only_library_functions() -> None:
    """Bare library calls gain their module; qualified calls and notebook variables do not."""
    f = Finding(
        "changes.errors_after",
        "x",
        Status.OK,
        "s",
        reproduce="check_errors_after_change(events, 'd.jsonl', since='é')",
    )
    assert reproduce_call(f) == "changes.check_errors_after_change(events, 'd.jsonl', since='é')"
    g = f.replace(
        check="logs.errors_since",
        reproduce="check_errors_since(read_events('a.log', since='ü'), 'T')",
    )
    assert reproduce_call(g) == "logs.check_errors_since(logs.read_events('a.log', since='ü'), 'T')"
    assert reproduce_call(g.replace(reproduce="logs.trace('a')")) == "logs.trace('a')"
    assert reproduce_call(g.replace(reproduce="not python (")) == "not python ("


# --- aura-ops open ----------------------------------------------------------------------------
def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for(q: queue.Queue[str], pattern: str, timeout_s: float) -> re.Match[str]:
    deadline, seen = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if m := re.search(pattern, line):
            return m
    raise AssertionError(f"no {pattern!r} within {timeout_s} s in:\n{''.join(seen)}")


def _refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_cli_open_serves_the_worksheet_and_stops(
    live_run: tuple[Sandbox, RunResult], tmp_path: Path
) -> None:
    """`aura-ops open RUN` serves the worksheet on loopback with a token; SIGTERM stops it all."""
    _, run = live_run
    out_root = run.run_dir.parent.parent
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
    }
    cmd = [
        sys.executable,
        "-m",
        "aura_ops.cli",
        "open",
        run.record["run_id"],
        "-o",
        str(out_root),
        "--no-browser",
    ]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        m = _wait_for(
            _lines(proc),
            r"JupyterLab: (http://127\.0\.0\.1:(\d+)/lab/tree/(\S+)"
            r"\?token=([0-9a-f]+))",
            90,
        )
        port, path, token = int(m[2]), m[3], m[4]
        assert path.endswith(f"{run.record['run_id']}.ipynb")
        api = f"http://127.0.0.1:{port}/api"
        assert httpx.get(f"{api}/contents/{path}", timeout=10).status_code == 403
        auth = {"Authorization": f"token {token}"}
        got = httpx.get(f"{api}/contents/{path}", headers=auth, timeout=10)
        assert got.status_code == 200 and got.json()["type"] == "notebook"
        kernel = httpx.post(f"{api}/kernels", headers=auth, json={"name": "python3"}, timeout=30)
        kernel_id = kernel.json()["id"]
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:  # SIGTERM stops its JupyterLab too; SIGKILL would orphan it
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    assert _refuses(port)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert kernel_id not in ps.stdout  # its kernel was shut down with it
    assert (out_root / "worksheets" / f"{run.record['run_id']}.ipynb").is_file()


# --- environment preselection -----------------------------------------------------------------
def test_connect_applies_the_preselected_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With AURA_OPS_ENV, connect() sets the parameters the notebook defined, nothing else."""
    monkeypatch.setenv(ENV_VARIABLE, "staging")
    monkeypatch.delenv("AURA_OPS_RUN_ID", raising=False)
    ns: dict[str, Any] = {"subject": "thing", "level": "OK"}
    assert connect(ns) == {"subject": "staging-api"}
    assert ns == {"subject": "staging-api", "level": "OK"}
    assert "environment 'staging': subject='staging-api'" in capsys.readouterr().out


def test_connect_reads_an_environment_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AURA_OPS_ENV may name an environment file (what `lab --sandbox` writes)."""
    env_file = tmp_path / "sandbox.yaml"
    params = {"base_url": "http://127.0.0.1:1", "logs": "not a module"}
    env_file.write_text(json.dumps({"parameters": params}))
    monkeypatch.setenv(ENV_VARIABLE, str(env_file))
    monkeypatch.delenv("AURA_OPS_RUN_ID", raising=False)
    assert preselected_environment() == ("sandbox", params)
    cell = (
        "from aura_ops import logs\nfrom aura_ops.config import connect\n"
        "base_url = 'http://127.0.0.1:8000'\napplied = connect(quiet=True)"
    )
    ns: dict[str, Any] = {}
    exec(cell, ns)  # as a notebook cell runs: connect() defaults to the caller's globals
    assert ns["applied"] == {"base_url": "http://127.0.0.1:1"}
    assert ns["base_url"] == "http://127.0.0.1:1" and ns["logs"].__name__ == "aura_ops.logs"


def test_connect_changes_nothing_in_runs_and_pinned_worksheets(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a runner's run, in a pinned worksheet, or with no environment, connect() is a no-op."""
    monkeypatch.setenv(ENV_VARIABLE, "staging")
    monkeypatch.setenv("AURA_OPS_RUN_ID", "r")
    assert connect({"subject": "x"}) == {}
    monkeypatch.delenv("AURA_OPS_RUN_ID")
    assert connect({"subject": "x", PINNED_RUN: "r"}) == {}
    monkeypatch.delenv(ENV_VARIABLE)
    assert connect({"subject": "x"}) == {}
    monkeypatch.setenv(ENV_VARIABLE, "nope")
    with pytest.raises(ConfigError, match="unknown environment"):
        connect({"subject": "x"})


def test_kernels_use_the_environment_and_runs_keep_their_precedence(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A kernel started under `lab --env` uses it; a run keeps its own --env < -p precedence."""
    write_runbook(
        project,
        "connected",
        'subject = "thing"  # what is judged\nrun_id = ""  # r',
        "from aura_ops import Finding, show\nfrom aura_ops.config import connect\n"
        "connect(globals())\nshow(Finding('t.subject', subject, 'OK', subject))",
    )
    monkeypatch.setenv(ENV_VARIABLE, "staging")
    monkeypatch.delenv("AURA_OPS_RUN_ID", raising=False)
    nb = nbformat.read(project / "notebooks" / "connected.ipynb", as_version=4)
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    assert [f.subject for f in extract_findings(nb)] == ["staging-api"]
    monkeypatch.setenv(ENV_VARIABLE, str(tmp_path / "elsewhere.yaml"))  # ignored in runs
    run = run_runbook(
        "connected", env="staging", params={"subject": "explicit"}, output_root=tmp_path
    )
    assert [f.subject for f in run.findings] == ["explicit"]


def test_lab_rejects_contradictory_options(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad lab options exit 64 with a one-line error before anything starts."""
    assert main(["lab", "--fault", "bad-deploy", "--no-browser"]) == 64
    assert main(["lab", "--sandbox", "--fault", "no-such-fault", "--no-browser"]) == 64
    assert main(["lab", "--env", "no-such-env", "--no-browser"]) == 64
    assert main(["lab", "no-such-runbook", "--no-browser"]) == 64
    assert main(["open", "no-such-run", "--no-browser"]) == 64
    err = capsys.readouterr().err
    assert "--fault needs --sandbox" in err and "unknown fault" in err
    assert "unknown environment" in err and "unknown runbook" in err and "no run" in err


# --- runbooks stay pleasant to edit -------------------------------------------------------------
def test_committed_notebooks_have_no_outputs() -> None:
    """Every runbook is committed stripped: no outputs, execution counts or papermill metadata."""
    books = sorted((project_root() / "notebooks").glob("*.ipynb"))
    assert books
    for path in books:
        nb = nbformat.read(path, as_version=4)
        assert "papermill" not in nb.metadata, path.name
        for i, cell in enumerate(nb.cells):
            where = f"{path.name} cell {i}"
            assert "papermill" not in cell.metadata and "execution" not in cell.metadata, where
            if cell.cell_type == "code":
                assert (cell.outputs, cell.execution_count) == ([], None), where


def test_pre_commit_strips_notebooks_and_runs_ruff() -> None:
    """The pre-commit hooks strip notebooks (papermill keys too) and lint with ruff."""
    config = yaml.safe_load((project_root() / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    strip = hooks["nbstripout"]
    args = " ".join([strip["entry"], *strip.get("args", [])])
    assert "--extra-keys" in args and "metadata.papermill cell.metadata.papermill" in args
    assert {"ruff-check", "ruff-format"} <= set(hooks)
    assert "jupyter" in hooks["ruff-check"]["types_or"]
