"""Investigate in JupyterLab: runbooks pointed at an environment, finished runs as worksheets.

``aura-ops lab --env prod`` starts JupyterLab on ``notebooks/`` with ``AURA_OPS_ENV=prod`` in
the kernels' environment, so a runbook's ``connect(globals())`` uses it without edits.
``aura-ops lab --sandbox --fault bad-deploy`` first starts the sandbox with background traffic,
injects the fault, and preselects an environment file pointing at that sandbox: a fire drill.

``aura-ops open RUN`` copies a run's executed notebook to ``outputs/worksheets/RUN.ipynb``
(the run directory, the recorded evidence, is never written to), pins the run's parameters and
window in an ``injected-parameters`` cell, and opens the copy: a re-run cell looks at the same
window with the same inputs.

JupyterLab always binds to 127.0.0.1 and requires a random token; it runs in its own session
so that Ctrl-C (or SIGTERM) stops it, its kernels and the sandbox in order, without Jupyter's
"shut down this server?" prompt.

:func:`reproduce_call` turns a finding's ``reproduce`` into the call that works in a runbook
notebook, which imports the check modules (``from aura_ops import logs``) rather than their
functions: ``check_error_types(read_events(...))`` becomes
``logs.check_error_types(logs.read_events(...))``. Finding cards show that form.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import webbrowser
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aura_ops.config import ENV_VARIABLE, PINNED_RUN, load_environment, project_root
from aura_ops.errors import ConfigError, RunbookError, SourceUnavailableError
from aura_ops.findings import Finding

__all__ = [
    "CHECK_MODULES",
    "LabServer",
    "make_worksheet",
    "open_run",
    "reproduce_call",
    "resolve_run",
    "run_lab",
]

#: Modules whose public functions a finding's ``reproduce`` call may name.
CHECK_MODULES = ("health", "logs", "metrics", "database", "kube", "system", "changes")
RUN_ID = re.compile(r"^[0-9]{6}-[a-z0-9][a-z0-9-]{0,63}-[0-9a-f]{4,}$")
Say = Callable[[str], None]


def _say(msg: str) -> None:
    print(msg, flush=True)


# --- JupyterLab -------------------------------------------------------------------------------
class LabServer:
    """A JupyterLab server on 127.0.0.1 with a random token, stopped with everything it started.

    ``with LabServer(root) as lab: print(lab.url_for("notebooks/x.ipynb"))``. ``env`` adds
    variables to the server's environment, which its kernels inherit.
    """

    def __init__(
        self,
        root_dir: str | Path,
        *,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 90.0,
    ) -> None:
        from aura_ops.sandbox import free_port

        self.root_dir = Path(root_dir).resolve()
        self.port = port or free_port()
        self.token = secrets.token_hex(24)
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkdtemp(prefix="aura-ops-lab-")) / "jupyterlab.log"

    @property
    def url(self) -> str:
        """The JupyterLab URL, token included."""
        return f"{self.base_url}/lab?token={self.token}"

    def url_for(self, path: str | Path) -> str:
        """The URL that opens ``path`` (a file under ``root_dir``) in JupyterLab."""
        rel = Path(path).resolve().relative_to(self.root_dir).as_posix()
        return f"{self.base_url}/lab/tree/{quote(rel)}?token={self.token}"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        return [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # containers often run as root; loopback and a token keep it private regardless
            *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),
        ]

    def start(self) -> LabServer:
        """Start JupyterLab and wait until its API answers (raises SourceUnavailableError)."""
        env = {**os.environ, **self.env, "JUPYTER_TOKEN": self.token}
        env.setdefault("MPLCONFIGDIR", str(Path(tempfile.gettempdir()) / "aura-ops-mpl"))
        for var in ("AURA_OPS_RUN_ID", "AURA_OPS_TRIGGER"):  # a person, not a run
            env.pop(var, None)
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.root_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.startup_timeout_s
        headers = {"Authorization": f"token {self.token}"}
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise SourceUnavailableError(f"JupyterLab exited at start:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"{self.base_url}/api/status", headers=headers, timeout=2.0)
                if r.status_code == 200:
                    return
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise SourceUnavailableError(
            f"JupyterLab did not answer within {self.startup_timeout_s:.0f} s:\n{tail}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log (for error messages)."""
        with contextlib.suppress(OSError):
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the server: SIGTERM (it shuts its kernels down), then SIGKILL after a deadline."""
        proc, self.proc = self.proc, None
        shutil.rmtree(self._log.parent, ignore_errors=True)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so ``with`` blocks stop what they started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(lab: LabServer, url: str, *, open_browser: bool, say: Say) -> int:
    """Print the URL, open a browser, and wait for Ctrl-C/SIGTERM or the server's exit."""
    say(f"JupyterLab: {url}")
    say("Ctrl-C to stop")
    if open_browser:
        webbrowser.open(url)
    try:
        while lab.running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping JupyterLab")
        return 0
    say(f"JupyterLab exited:\n{lab.log_tail()}")
    return 1


def run_lab(
    runbook: str | None = None,
    *,
    env: str | None = None,
    sandbox: bool = False,
    faults: Sequence[str] = (),
    port: int = 0,
    open_browser: bool = True,
    traffic_rps: float = 10.0,
    baseline_s: float = 3.0,
    say: Say = _say,
) -> int:
    """``aura-ops lab``: serve ``notebooks/`` until Ctrl-C/SIGTERM; returns the exit code.

    With ``sandbox``, start the sandbox first (background traffic for ``baseline_s``, then the
    ``faults``) and preselect an environment file pointing at it; ``runbook`` defaults to the
    first fault's runbook and is the notebook the printed URL opens.
    """
    from aura_ops.runner import resolve_runbook
    from aura_ops.sandbox import FAULTS, Sandbox

    if env and sandbox:
        raise ConfigError("--env and --sandbox exclude each other", hint="pick one")
    if faults and not sandbox:
        raise ConfigError("--fault needs --sandbox", hint="aura-ops lab --sandbox --fault NAME")
    for name in faults:
        if name not in FAULTS:
            raise ConfigError(f"unknown fault {name!r}", hint=f"faults: {', '.join(FAULTS)}")
    if env:
        load_environment(env)  # fail now, not in the first cell
    runbook = runbook or (FAULTS[faults[0]].runbook if faults else None)
    root = project_root()
    notebook = resolve_runbook(runbook, root) if runbook else None
    extra = _kernel_env(root)
    if env:
        extra[ENV_VARIABLE] = env
    with _stop_on_sigterm():
        try:
            if not sandbox:
                return _lab_on(root, notebook, extra, port, open_browser, say)
            say("starting the sandbox (service + PostgreSQL)")
            with Sandbox() as sb:
                extra.update(_prepare_sandbox(sb, faults, traffic_rps, baseline_s, say))
                code = _lab_on(root, notebook, extra, port, open_browser, say)
            say("sandbox stopped")
            return code
        except KeyboardInterrupt:
            say("interrupted: stopped everything started")
            return 0


def _kernel_env(root: Path) -> dict[str, str]:
    """Variables for the server and its kernels: the project, and one audit log for it."""
    audit = os.environ.get("AURA_OPS_AUDIT_LOG") or str(root / "outputs" / "audit.jsonl")
    return {"AURA_OPS_HOME": str(root), "AURA_OPS_AUDIT_LOG": audit}


def _lab_on(
    root: Path,
    notebook: Path | None,
    extra: Mapping[str, str],
    port: int,
    open_browser: bool,
    say: Say,
) -> int:
    with LabServer(root / "notebooks", port=port, env=extra) as lab:
        url = lab.url_for(notebook) if notebook else lab.url
        return _serve(lab, url, open_browser=open_browser, say=say)


def _prepare_sandbox(
    sb: Any, faults: Sequence[str], rps: float, baseline_s: float, say: Say
) -> dict[str, str]:
    """Traffic, faults and an environment file for a started sandbox; the variables to set."""
    sb.start_traffic(rps=rps, seed=7)
    say(f"sandbox running at {sb.base_url}; background traffic at {rps:g} req/s")
    if faults:
        time.sleep(baseline_s)
    for name in faults:
        fault = sb.inject(name)
        say(f"injected fault {fault.name}: {fault.summary}")
    env_file = Path(sb.workdir) / "sandbox.yaml"
    params = {
        k: v
        for k, v in sb.environment().items()
        if k != "started_at" and isinstance(v, (str, int, float, bool))
    }
    env_file.write_text(
        json.dumps({"description": "the sandbox started by aura-ops lab", "parameters": params}),
        encoding="utf-8",
    )  # JSON is YAML
    # the secrets the parameters name (the DSN, ...) reach the kernels as variables, never cells
    return {ENV_VARIABLE: str(env_file), **sb.kernel_env()}


# --- worksheets -------------------------------------------------------------------------------
def resolve_run(run: str | Path, *, output_root: str | Path | None = None) -> Path:
    """The directory of run ``run``: a run id, or the path of a run directory or a file in it."""
    path = Path(run)
    if path.is_file():
        path = path.parent
    if path.is_dir():
        if not (path / "findings.json").is_file() or not (path / "notebook.ipynb").is_file():
            raise ConfigError(
                f"{path} is not a run directory",
                hint="a run directory holds notebook.ipynb and findings.json",
            )
        return path.resolve()
    root = Path(output_root or project_root() / "outputs")
    name = str(run)
    if RUN_ID.match(name):
        found = sorted(root.glob(f"*/{name}/findings.json"))
        if found:
            return found[-1].parent.resolve()
    recent = sorted(root.glob("*/*/findings.json"), key=lambda p: p.parent.name)[-3:]
    hint = ", ".join(p.parent.name for p in recent) or f"no runs under {root}"
    raise ConfigError(f"no run {name!r} under {root}", hint=f"recent runs: {hint}")


def _pinned_parameters(record: Mapping[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
    pinned = {k: v for k, v in dict(record.get("parameters") or {}).items() if k in declared}
    window = record.get("window") or {}
    for key, edge in (("window_start", "start"), ("window_end", "end")):
        if key in declared and window.get(edge):
            pinned[key] = window[edge]
    pinned[PINNED_RUN] = str(record.get("run_id", ""))
    return pinned


def _header(record: Mapping[str, Any], run_dir: Path, pinned: Mapping[str, Any]) -> str:
    verdict = record.get("verdict") or {}
    window = record.get("window") or {}
    span = f"{window.get('start')} → {window.get('end')}" if window else "not recorded"
    pins_window = "window_start" in pinned and "window_end" in pinned
    return (
        f"> **Worksheet of run `{record.get('run_id')}`** ({record.get('trigger', '')}, "
        f"verdict **{verdict.get('status', '?')}**: {verdict.get('headline', '')})\n>\n"
        f"> The recorded evidence stays untouched in `{run_dir}`. This copy keeps the run's "
        f"outputs; the cell tagged `injected-parameters` pins the run's parameters and window "
        f"({span}), so a re-run cell looks at the same window with the same inputs"
        + ("." if pins_window else " (this runbook declares no window parameters).")
        + " Add cells below anything to dig further; the environment preselected by "
        "`aura-ops lab --env` does not apply here."
    )


def make_worksheet(
    run_dir: str | Path, *, dest: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Copy a run's executed notebook to a worksheet with its parameters and window pinned.

    ``dest`` defaults to ``<output root>/worksheets/<run id>.ipynb``. An existing worksheet is
    kept (it may hold someone's work) unless ``overwrite``. The run directory is only read.
    """
    import nbformat
    import papermill
    from nbformat.v4 import new_markdown_cell
    from papermill.parameterize import parameterize_notebook

    run_dir = resolve_run(run_dir)
    record = json.loads((run_dir / "findings.json").read_text(encoding="utf-8"))
    run_id = str(record.get("run_id") or run_dir.name)
    target = Path(dest) if dest else run_dir.parent.parent / "worksheets" / f"{run_id}.ipynb"
    if target.exists() and not overwrite:
        return target
    source = run_dir / "notebook.ipynb"
    declared = papermill.inspect_notebook(str(source))
    if not declared:
        raise RunbookError(f"{source} has no cell tagged 'parameters': nothing to pin")
    pinned = _pinned_parameters(record, declared)
    nb = nbformat.read(source, as_version=4)
    nb = parameterize_notebook(
        nb, pinned, comment=f"Pinned by `aura-ops open` to run {run_id}: its parameters and window"
    )
    header = new_markdown_cell(_header(record, run_dir, pinned))
    header.metadata["tags"] = ["aura-ops-worksheet"]
    nb.cells.insert(0, header)
    nb.metadata["aura_ops"] = {"worksheet_of": run_id, "run_dir": str(run_dir)}
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


def open_run(
    run: str | Path,
    *,
    output_root: str | Path | None = None,
    port: int = 0,
    open_browser: bool = True,
    overwrite: bool = False,
    say: Say = _say,
) -> int:
    """``aura-ops open``: make (or reuse) the run's worksheet and serve it until Ctrl-C/SIGTERM."""
    run_dir = resolve_run(run, output_root=output_root)
    sheet = make_worksheet(run_dir, overwrite=overwrite)
    say(f"worksheet: {sheet} (evidence untouched in {run_dir})")
    root = project_root()
    lab_root = root if sheet.resolve().is_relative_to(root) else sheet.parent
    with _stop_on_sigterm():
        try:
            with LabServer(lab_root, port=port, env=_kernel_env(root)) as lab:
                return _serve(lab, lab.url_for(sheet), open_browser=open_browser, say=say)
        except KeyboardInterrupt:
            say("interrupted")
            return 0


# --- reproduce --------------------------------------------------------------------------------
def _home(name: str, modules: Sequence[str]) -> str | None:
    """The first of ``modules`` that exports ``name`` publicly."""
    for mod in modules:
        try:
            module = importlib.import_module(f"aura_ops.{mod}")
        except ImportError:
            continue
        if name in getattr(module, "__all__", ()):
            return mod
    return None


def reproduce_call(finding: Finding) -> str:
    """The finding's ``reproduce`` as it runs in a runbook notebook: calls module-qualified.

    A bare call of a public check-module function (``check_endpoint(...)``) becomes
    ``health.check_endpoint(...)``, looking first in the module the check id names; calls that
    are qualified already, and names that are no module's (a notebook variable), stay as they
    are. Text that is not a Python expression is returned unchanged.
    """
    text = (finding.reproduce or "").strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return text
    prefix = finding.check.partition(".")[0]
    order = [prefix, *(m for m in CHECK_MODULES if m != prefix)]
    order = [m for m in order if m in CHECK_MODULES]
    raw = text.encode()
    edits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            home = _home(node.func.id, order)
            if home:
                edits.append((node.func.col_offset, home))
    for offset, home in sorted(edits, reverse=True):  # offsets are UTF-8 byte offsets
        raw = raw[:offset] + f"{home}.".encode() + raw[offset:]
    return raw.decode()
