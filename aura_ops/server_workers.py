"""The receiver's back half: a bounded pool of worker threads that execute queued runs.

Each worker claims the oldest queued run from the :class:`~aura_ops.runstore.RunStore`, calls
the runner function with a :class:`Job` and records the outcome. The default runner,
:func:`papermill_runner`, is ``run_runbook(..., trigger="alert", timeout_s=...)``: the notebook
runs in a child process that is killed at the deadline, and remediation refuses to act.

The runner's child processes carry ``AURA_OPS_SERVE_RUN=<marker>:<run id>`` in their
environment. A server killed with SIGKILL cannot stop them, so at the next start
:func:`reap_orphans` kills every process still carrying the marker of this database before
the interrupted runs are queued again -- a run is never executing twice.

Finished runs can be announced by :class:`SlackNotifier` (a Slack-compatible incoming webhook,
URL from an environment variable; failures are logged, never fatal).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from aura_ops._execute import NICE_ENV
from aura_ops.errors import ConfigError
from aura_ops.redact import Redactor, default_redactor
from aura_ops.runstore import RunStore

if TYPE_CHECKING:
    from aura_ops.kernelpool import KernelPool

__all__ = [
    "Job",
    "MARKER_ENV",
    "RedactingFilter",
    "RunOutcome",
    "Runner",
    "SlackNotifier",
    "WorkerPool",
    "configure_logging",
    "lock_database",
    "papermill_runner",
    "reap_orphans",
    "run_marker",
]

log = logging.getLogger("aura_ops.server")
MARKER_ENV = "AURA_OPS_SERVE_RUN"


@dataclasses.dataclass(frozen=True)
class Job:
    """One run to execute: what the runner function receives."""

    run_id: int
    runbook: str
    environment: str
    params: Mapping[str, Any]
    timeout_s: float
    extra_env: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """What a runner function returns: the verdict and where the evidence is."""

    status: str
    headline: str
    run_dir: str = ""
    duration_s: float | None = None


Runner = Callable[[Job], RunOutcome]


def papermill_runner(
    *,
    output_root: str | Path,
    root: Path | None = None,
    kernel_pool: KernelPool | None = None,
    nice: int = 0,
) -> Runner:
    """The real runner: :func:`aura_ops.runner.run_runbook` with ``trigger="alert"``, on a warm
    kernel of ``kernel_pool`` when one is ready (else cold), at niceness ``nice``."""
    lower = {NICE_ENV: str(nice)} if nice > 0 else {}

    def run(job: Job) -> RunOutcome:
        from aura_ops.runner import run_runbook

        result = run_runbook(
            job.runbook,
            env=job.environment or None,
            params=dict(job.params),
            output_root=output_root,
            trigger="alert",
            timeout_s=job.timeout_s,
            root=root,
            extra_env={**lower, **job.extra_env},
            kernel_pool=kernel_pool,
        )
        return RunOutcome(
            status=result.verdict.status.name,
            headline=result.verdict.headline,
            run_dir=str(result.run_dir),
            duration_s=float(result.record.get("duration_s") or 0.0),
        )

    return run


class RedactingFilter(logging.Filter):
    """Redacts every record (message, arguments and traceback) before any handler sees it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted rendering; never drops a record."""
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = self.redactor.text(text), None
        return True


def configure_logging(redactor: Redactor, level: str = "info") -> None:
    """Log to stderr through ``redactor`` (this process's loggers, uvicorn's included)."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("papermill").setLevel(logging.WARNING)  # one line per cell otherwise


def lock_database(db_path: Path) -> Any:
    """Hold an exclusive lock next to the database: one server per database. The lock is
    released when the returned file is closed or the process dies (even by SIGKILL)."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(db_path.with_name(db_path.name + ".lock"), "a+")  # noqa: SIM115
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise ConfigError(
            f"another aura-ops serve is using {db_path}", hint="stop it, or pass another --db"
        ) from None
    return fh


def run_marker(db_path: Path) -> str:
    """The marker of the runs of the server owning ``db_path`` (a hash of its real path)."""
    return hashlib.sha256(str(Path(db_path).resolve()).encode()).hexdigest()[:12]


def reap_orphans(marker: str) -> int:
    """SIGKILL every process whose environment carries ``AURA_OPS_SERVE_RUN=<marker>:...``.

    Linux only (reads ``/proc/*/environ`` of processes this user may read); returns how many
    were killed.
    """
    proc = Path("/proc")
    if not marker or not proc.is_dir():
        return 0
    needle = f"{MARKER_ENV}={marker}:".encode()
    killed = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(var.startswith(needle) for var in environ.split(b"\0")):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


class SlackNotifier:
    """Posts a finished run's verdict and report link to a Slack-compatible webhook."""

    def __init__(
        self,
        url: str,
        *,
        public_url: str = "",
        timeout_s: float = 5.0,
        redactor: Redactor | None = None,
    ) -> None:
        self.url = url
        self.public_url = public_url.rstrip("/")
        self.timeout_s = timeout_s
        self.redactor = redactor or default_redactor()

    def message(self, run: Mapping[str, Any]) -> dict[str, str]:
        """The JSON body posted for ``run`` (Slack ``text`` with an ``<url|label>`` link)."""
        verdict = run.get("verdict") or run.get("state", "").upper()
        link = f"{self.public_url}/runs/{run['id']}/report"
        text = (
            f"*{verdict}* {run.get('runbook')} for alert {run.get('alertname') or '?'}: "
            f"{run.get('headline') or run.get('error') or ''}"
        )
        if run.get("resolved_at"):
            text += " (alert already resolved)"
        return {"text": self.redactor.text(f"{text}\n<{link}|evidence report>")}

    def __call__(self, run: Mapping[str, Any]) -> bool:
        """Post; True when the webhook answered 2xx. Never raises."""
        try:
            resp = httpx.post(self.url, json=self.message(run), timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            log.warning("notification for run %s failed: %s", run.get("id"), type(exc).__name__)
            return False
        if not resp.is_success:
            log.warning(
                "notification for run %s: webhook answered %s", run.get("id"), resp.status_code
            )
            return False
        return True


class WorkerPool:
    """``workers`` threads executing queued runs, each with a wall-clock limit."""

    def __init__(
        self,
        store: RunStore,
        runner: Runner,
        *,
        workers: int = 2,
        run_timeout_s: float = 300.0,
        marker: str = "",
        on_finish: Callable[[Mapping[str, Any]], Any] | None = None,
        poll_s: float = 2.0,
        redactor: Redactor | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.workers = max(1, workers)
        self.run_timeout_s = run_timeout_s
        self.marker = marker
        self.on_finish = on_finish
        self.poll_s = poll_s
        self.redactor = redactor or default_redactor()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy_lock = threading.Lock()
        self.busy = 0

    def start(self) -> None:
        """Start the worker threads."""
        self._stop.clear()
        self._abandon.clear()
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, name=f"aura-ops-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def wake(self) -> None:
        """Tell idle workers that a run was queued."""
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout_s: float = 5.0) -> int:
        """Stop claiming runs; wait up to ``timeout_s`` for the runs in progress. Runs still
        going then are abandoned: they stay ``running`` in the store, their processes are
        killed, and they run again at the next start. Returns how many were abandoned."""
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._threads:
            self._abandon.set()
            reap_orphans(self.marker)
        return len(self._threads)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                row = self.store.claim()
            except Exception as exc:  # database gone: log, wait, retry
                log.error("cannot claim a run: %s", exc)
                row = None
            if row is None:
                with self._cond:
                    if not self._stop.is_set():
                        self._cond.wait(self.poll_s)
                continue
            self._execute(row)

    def _execute(self, row: Mapping[str, Any]) -> None:
        run_id = int(row["id"])
        job = Job(
            run_id=run_id,
            runbook=row["runbook"],
            environment=row["environment"],
            params=row["params"],
            timeout_s=self.run_timeout_s,
            extra_env={MARKER_ENV: f"{self.marker}:{run_id}"},
        )
        log.info("run %s: %s started (attempt %s)", run_id, job.runbook, row["attempts"])
        with self._busy_lock:
            self.busy += 1
        try:
            done = self._call(job)
        finally:
            with self._busy_lock:
                self.busy -= 1
        if self._abandon.is_set():
            log.warning("run %s abandoned at shutdown: it runs again at the next start", run_id)
            return
        self._record(job, done)

    def _call(self, job: Job) -> dict[str, Any]:
        """Run ``job``; the fields :meth:`RunStore.finish` records."""
        t0 = time.monotonic()
        try:
            out = self.runner(job)
        except Exception as exc:
            error = self.redactor.text(f"{type(exc).__name__}: {exc}")
            return {"state": "failed", "error": error, "duration_s": time.monotonic() - t0}
        return {
            "state": "done",
            "verdict": out.status,
            "headline": out.headline,
            "duration_s": time.monotonic() - t0 if out.duration_s is None else out.duration_s,
            "run_dir": out.run_dir,
        }

    def _record(self, job: Job, done: dict[str, Any]) -> None:
        try:
            finished = self.store.finish(job.run_id, **done)
        except Exception as exc:  # stays 'running': queued again at the next start
            log.error("run %s: cannot record its end: %s", job.run_id, exc)
            return
        log.info(
            "run %s: %s %s in %.1f s: %s",
            job.run_id,
            job.runbook,
            done["state"],
            done["duration_s"],
            self.redactor.text(str(done.get("headline") or done.get("error") or "")),
        )
        if finished is not None and self.on_finish is not None:
            try:
                self.on_finish(finished)
            except Exception as exc:
                log.warning("after run %s: %s", job.run_id, exc)
