"""Warm kernels for alert-triggered runs: a pool of executors started before the alert comes.

A cold run (:func:`aura_ops.runner.run_runbook`) starts a Python process, imports papermill
(~0.7 s), starts a kernel (~0.7 s), and the notebook's first cell imports pandas, matplotlib
and the library (~1 s). A :class:`KernelPool` does all of that ahead of time: each *warm
executor* is a child process (``python -m aura_ops.kernelpool``) that has imported papermill,
started its kernel, imported the runbooks' modules in it and drawn one PNG (fonts loaded),
then waits for one job on its standard input.

Safety is the same as the cold path's, by construction:

- **single use**: an executor runs one notebook and exits, its kernel shut down with it; the
  pool starts a replacement after the run. No state -- variables, findings shown, environment,
  working directory, a hung thread -- can leak from one run into the next, and a run that hung
  or crashed its kernel cannot poison the pool: that kernel is discarded like every other;
- **the same deadline**: the executor runs in its own session; at the deadline the runner
  interrupts the kernel (so the notebook can record where it hung), waits at most 2 s, then
  kills the executor's process group and the kernel's;
- **per-run environment**: ``AURA_OPS_TRIGGER``, ``AURA_OPS_RUN_ID``, the DSN variable of the
  sandbox and any other ``extra_env`` are set in the kernel's ``os.environ`` (and its working
  directory changed) before the first cell; variables read only at interpreter start
  (``PYTHON*``, ``LD_*``, ``MPL*``, ``JUPYTER*``...) that differ from the pool's send the run
  down the cold path instead;
- **no orphans**: an idle executor exits when its parent goes (end of input); a busy one
  watches its parent and kills its kernel if the parent dies; a kernel exits when its executor
  dies (ipykernel's parent poller). ``env`` can carry the server's orphan marker.

``run_runbook(..., kernel_pool=pool)`` uses it; with ``AURA_OPS_WARM_KERNELS=N`` in the
environment, :func:`default_pool` gives every ``run_runbook`` call of the process one shared
pool of N (for ``aura-ops serve``). The child-process path stays the default.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["KernelPool", "WarmExecutor", "default_pool", "preload_modules"]

log = logging.getLogger("aura_ops.kernelpool")

#: Modules every warm kernel imports besides those the runbooks import.
BASE_MODULES = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot", "httpx", "aura_ops")
#: Environment variables read at interpreter or kernel start: a run that needs other values
#: than the pool's cannot use a warm kernel.
STARTUP_PREFIXES = ("PYTHON", "LD_", "MPL", "JUPYTER", "JPY_", "IPYTHON", "OMP_", "MKL_", "PATH")
ENV_VAR = "AURA_OPS_WARM_KERNELS"
_INTERRUPT_GRACE_S = 2.0


def preload_modules(notebooks_dir: Path | None = None) -> tuple[str, ...]:
    """The modules a warm kernel imports: :data:`BASE_MODULES` and every module the runbooks
    in ``notebooks_dir`` import (``from aura_ops import logs`` gives ``aura_ops.logs``)."""
    import ast

    import nbformat

    found: list[str] = list(BASE_MODULES)
    for path in sorted(notebooks_dir.glob("*.ipynb")) if notebooks_dir else []:
        try:
            nb = nbformat.read(path, as_version=4)
        except (OSError, ValueError):
            continue
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found += [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.append(node.module)
                    found += [f"{node.module}.{a.name}" for a in node.names]
    return tuple(dict.fromkeys(found))


def _preload_code(modules: tuple[str, ...]) -> str:
    """Code run silently in a new kernel: imports (submodule names that are not modules are
    skipped) and one PNG drawn off-screen. It binds no name in the user namespace."""
    body = f"""
import importlib, io
for name in {list(modules)!r}:
    try:
        importlib.import_module(name)
    except Exception:
        pass
try:
    from matplotlib.figure import Figure
    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1], [0, 1])
    fig.savefig(io.BytesIO(), format="png")
except Exception:
    pass
"""
    return f"exec({body!r}, {{}})"


class WarmExecutor:
    """One started executor: a process with papermill imported and a ready kernel."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.kernel_pid: int | None = None
        self.ready = threading.Event()
        self.failed = False

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def wait_ready(self, stdout: BinaryIO, timeout_s: float) -> None:
        """Read the ready line; ``failed`` when the executor died or took over ``timeout_s``."""
        timer = threading.Timer(timeout_s, self.kill)
        timer.daemon = True
        timer.start()
        try:
            line = stdout.readline()
        finally:
            timer.cancel()
        try:
            msg = json.loads(line) if line else {}
        except ValueError:
            msg = {}
        if msg.get("ready"):
            self.kernel_pid = int(msg["kernel_pid"])
        else:
            self.failed = True
            self.kill()
        self.ready.set()

    def run(self, spec: Mapping[str, Any], env: Mapping[str, str], timeout_s: float) -> dict:
        """Execute one notebook (``spec`` as :mod:`aura_ops._execute` reads it) with a
        wall-clock limit; returns the runner's execution status."""
        assert self.proc.stdin is not None
        job = json.dumps({**spec, "env": dict(env), "timeout_s": timeout_s}) + "\n"
        try:
            self.proc.stdin.write(job.encode())
            self.proc.stdin.close()
        except OSError as exc:
            self.kill()
            return {"status": "failed", "error": f"warm executor gone: {exc}"}
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._interrupt()
            return {
                "status": "timeout",
                "error": f"run exceeded its {timeout_s:g} s deadline and "
                "was stopped; the findings below are what it had recorded",
            }
        finally:
            self._cleanup_log()
        if self.proc.returncode == 0:
            return {"status": "completed"}
        err_file = Path(spec["error_path"])
        if err_file.is_file():
            return {"status": "failed", **json.loads(err_file.read_text(encoding="utf-8"))}
        return {"status": "failed", "error": self._tail or f"exit code {self.proc.returncode}"}

    _tail = ""

    def _interrupt(self) -> None:
        """Interrupt the kernel (the notebook records where it hung), then kill everything."""
        if self.kernel_pid:
            _signal_group(self.kernel_pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=_INTERRUPT_GRACE_S)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the executor's process group and the kernel's; reap the executor."""
        _signal_group(self.proc.pid, signal.SIGKILL)
        if self.kernel_pid:
            _signal_group(self.kernel_pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.proc.wait(timeout=10)
        self._cleanup_log()

    def _cleanup_log(self) -> None:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            self._tail = " | ".join(text[-5:])
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


class KernelPool:
    """``size`` warm executors kept ready; thread-safe. Use as a context manager or call
    :meth:`start` and :meth:`close`."""

    def __init__(
        self,
        size: int = 2,
        *,
        env: Mapping[str, str] | None = None,
        modules: tuple[str, ...] | None = None,
        notebooks_dir: Path | None = None,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.size = max(1, size)
        base = {**os.environ, **(env or {})}
        base.setdefault("MPLCONFIGDIR", str(Path(tempfile.gettempdir()) / "aura-ops-mpl"))
        self.env = base
        self.modules = modules if modules is not None else preload_modules(notebooks_dir)
        self.start_timeout_s = start_timeout_s
        self._cond = threading.Condition()
        self._idle: list[WarmExecutor] = []
        self._starting = 0
        self._closed = False
        self._failures = 0
        self.served = 0
        self.fallbacks = 0

    def __enter__(self) -> KernelPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> KernelPool:
        """Start executors until ``size`` are ready or starting; returns at once."""
        with self._cond:
            missing = self.size - len(self._idle) - self._starting
            if self._closed or missing <= 0 or self._failures >= 3:
                return self
            self._starting += missing
        for _ in range(missing):
            threading.Thread(target=self._spawn, name="aura-ops-warm-start", daemon=True).start()
        return self

    def _spawn(self) -> None:
        fd, log_name = tempfile.mkstemp(prefix="aura-ops-warm-", suffix=".log")
        ex: WarmExecutor | None = None
        try:
            with os.fdopen(fd, "wb") as log_file:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "aura_ops.kernelpool", _preload_code(self.modules)],
                    env=self.env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log_file,
                    start_new_session=True,
                )
            ex = WarmExecutor(proc, Path(log_name))
            assert proc.stdout is not None
            ex.wait_ready(proc.stdout, self.start_timeout_s)
        except OSError as exc:
            log.warning("cannot start a warm executor: %s", exc)
        with self._cond:
            self._starting -= 1
            if ex is not None and not ex.failed and not self._closed:
                self._idle.append(ex)
                self._failures = 0
            elif self._closed:
                pass  # closed while it started: killed below
            else:
                self._failures += 1
                if ex is not None:
                    log.warning("warm executor failed to start: %s", ex._tail or "no output")
                    ex.kill()
            self._cond.notify_all()
        if self._closed and ex is not None:
            ex.kill()

    def accepts(self, env: Mapping[str, str]) -> bool:
        """Whether a run with extra environment ``env`` can use a warm kernel."""
        return all(
            self.env.get(k) == v for k, v in env.items() if k.upper().startswith(STARTUP_PREFIXES)
        )

    def take(self, env: Mapping[str, str] | None = None, *, wait_s: float | None = None) -> Any:
        """A ready executor, removed from the pool, or None (closed, refused, none within
        ``wait_s``: the caller runs cold). Waits for one being started rather than going
        cold, since it is further along than a cold start would be."""
        if env and not self.accepts(env):
            self.fallbacks += 1
            return None
        deadline = time.monotonic() + (self.start_timeout_s if wait_s is None else wait_s)
        with self._cond:
            while not self._closed:
                while self._idle:
                    ex = self._idle.pop(0)
                    if ex.alive:
                        self.served += 1
                        return ex
                    ex.kill()
                    self._starting += 1  # replace the dead one
                    threading.Thread(target=self._spawn, daemon=True).start()
                left = deadline - time.monotonic()
                if self._starting == 0 or left <= 0:
                    break
                self._cond.wait(left)
        self.fallbacks += 1
        return None

    @contextlib.contextmanager
    def lease(
        self, env: Mapping[str, str] | None = None, *, wait_s: float = 10.0
    ) -> Iterator[WarmExecutor | None]:
        """``take`` (waiting at most ``wait_s`` for an executor being started: a run never
        waits long for a warm kernel) as a context manager; the pool is topped up when the
        block ends (after the run: a replacement starting during a run would slow it on a
        small machine)."""
        ex = self.take(env, wait_s=wait_s)
        try:
            yield ex
        finally:
            if ex is not None and ex.alive:
                ex.kill()
            self.start()

    def stats(self) -> dict[str, int]:
        """Executors ready and starting, runs served warm, runs sent cold."""
        with self._cond:
            return {
                "ready": len(self._idle),
                "starting": self._starting,
                "served": self.served,
                "fallbacks": self.fallbacks,
            }

    def close(self) -> None:
        """Stop every idle executor (and its kernel); executors starting are stopped when
        they report. Idempotent."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for ex in idle:
            ex.kill()


_DEFAULT: dict[str, KernelPool] = {}
_DEFAULT_LOCK = threading.Lock()


def default_pool(root: Path | None = None) -> KernelPool | None:
    """The process-wide pool when ``AURA_OPS_WARM_KERNELS`` is a positive number, else None.

    Started on first use and closed at exit; ``run_runbook`` uses it when no pool is given.
    """
    try:
        size = int(os.environ.get(ENV_VAR, "0") or 0)
    except ValueError:
        size = 0
    if size <= 0:
        return None
    with _DEFAULT_LOCK:
        pool = _DEFAULT.get("pool")
        if pool is None:
            from aura_ops.config import project_root

            pool = KernelPool(size, notebooks_dir=(root or project_root()) / "notebooks")
            pool.start()
            atexit.register(pool.close)
            _DEFAULT["pool"] = pool
        return pool


# --------------------------------------------------------------------------- the executor


def _kill_kernel(km: Any) -> None:
    """SIGKILL the kernel's process group (no messaging: works from any thread, any state)."""
    pid = getattr(km.provisioner, "pid", None) if km.provisioner is not None else None
    if pid:
        _signal_group(pid, signal.SIGKILL)


def _watch_parent(km: Any) -> None:
    """Kill the kernel and exit when the process that started this executor is gone."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                _kill_kernel(km)
                os._exit(3)

    threading.Thread(target=watch, name="aura-ops-parent-watch", daemon=True).start()


def _run_silently(km: Any, code: str, timeout_s: float) -> None:
    """Execute ``code`` in the kernel without output or history; raise if it failed."""
    import asyncio

    async def run() -> dict[str, Any]:
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=timeout_s)
            return dict(
                await kc.execute_interactive(
                    code, silent=True, store_history=False, timeout=timeout_s
                )
            )
        finally:
            kc.stop_channels()

    content = asyncio.run(run()).get("content", {})
    if content.get("status") != "ok":
        raise RuntimeError(f"{content.get('ename')}: {content.get('evalue')}")


def _execute_job(km: Any, job: Mapping[str, Any]) -> int:
    """Set the run's environment in the kernel, execute the notebook, record a failure."""
    from aura_ops._execute import execute

    env = {str(k): str(v) for k, v in job.get("env", {}).items()}
    os.environ.update(env)
    setup = f"import os as _o; _o.environ.update({env!r}); _o.chdir({job.get('cwd') or '.'!r})"
    spec = {**job, "progress": False}
    return execute(spec, before=lambda: _run_silently(km, setup + "; del _o", 60), km=km)


def _child_main(preload: str) -> None:
    """``python -m aura_ops.kernelpool CODE``: start a kernel, run CODE in it, say ready on
    stdout, execute the one job read from stdin, exit (kernel shut down).

    The kernel manager is the asynchronous one: with a blocking client nbclient cannot notice
    a kernel that died in the middle of a cell.
    """
    import asyncio
    import warnings

    from aura_ops._execute import lower_priority

    lower_priority()
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the kernel inherits stdout: it must never write into the protocol pipe
    warnings.simplefilter("ignore")
    import papermill  # noqa: F401  (imported now, not during the run)
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name="python3")
    asyncio.run(km.start_kernel())
    rc = 1
    try:
        _run_silently(km, preload, 300)
        _watch_parent(km)
        proto.write(json.dumps({"ready": True, "kernel_pid": km.provisioner.pid}) + "\n")
        proto.flush()
        line = sys.stdin.readline()
        rc = _execute_job(km, json.loads(line)) if line.strip() else 0
    except Exception as exc:
        print(f"warm executor: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        _kill_kernel(km)  # single use: nothing to save, no reason to wait
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    _child_main(sys.argv[1])
