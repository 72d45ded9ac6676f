"""Start, break, drive and stop the sandbox: a real service, a real PostgreSQL, real traffic."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from pathlib import Path
from typing import Any

import httpx

from aura_ops.errors import ConfigError, SourceUnavailableError
from aura_ops.sandbox import db_faults, gpu, host_faults, tracing
from aura_ops.sandbox.faults import FAULTS, Fault
from aura_ops.sandbox.peers import Peers
from aura_ops.sandbox.ports import check_exit_output, free_port, start_on_free_port
from aura_ops.sandbox.postgres import Postgres, start_postgres
from aura_ops.sandbox.store import init_schema, utcnow_iso

__all__ = ["Sandbox", "TrafficStats", "free_port"]

DSN_ENV = "AURA_OPS_SANDBOX_DSN"


@dataclasses.dataclass
class TrafficStats:
    """What the traffic generator sent and got back."""

    sent: int = 0
    by_status: Counter[int] = dataclasses.field(default_factory=Counter)
    failures: int = 0  # no HTTP answer at all

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "by_status": dict(self.by_status), "failures": self.failures}


class Sandbox:
    """The built-in practice target.

    ``with Sandbox() as sb: sb.inject("bad-deploy"); sb.traffic(5)`` starts PostgreSQL and the
    service on loopback, breaks it, drives real requests at it, and on exit stops everything it
    started and removes its working directory (unless ``keep=True``).
    """

    def __init__(
        self,
        workdir: str | Path | None = None,
        *,
        dsn: str | None = None,
        keep: bool = False,
        startup_timeout_s: float = 30.0,
        postgres: str = "auto",
    ) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="aura-ops-sandbox-")).resolve()
        self.keep = keep
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self._dsn = dsn
        # "auto": the Debian server (pg_stat_statements) when installed, else pgserver
        self.postgres = db_faults.choose_postgres(postgres)
        self.held: dict[str, list[Any]] = {}  # connections a database fault keeps open
        self.pg: Postgres | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._traffic: tuple[threading.Thread, threading.Event, TrafficStats] | None = None
        self.injected: list[Fault] = []
        self.accepted: deque[tuple[float, str]] = deque(maxlen=100)  # renders: (at, id)
        self.traced_id = ""  # the request a fault wants traced (request-trace)
        self.peers = Peers(self.workdir)  # provider, webhook endpoint, broker, Kubernetes API

    # --- lifecycle --------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.workdir / "state" / "logs" / "api.jsonl"

    @property
    def changes_path(self) -> Path:
        return self.workdir / "state" / "deploys.jsonl"

    @property
    def dsn(self) -> str:
        if self.pg is None:
            raise ConfigError("the sandbox is not started")
        return self.pg.dsn

    def start(self) -> Sandbox:
        """Start PostgreSQL, create the schema, start the service and wait until it answers."""
        (self.workdir / "state" / "logs").mkdir(parents=True, exist_ok=True)
        self.pg = start_postgres(self.workdir / "pgdata", dsn=self._dsn, prefer=self.postgres)
        init_schema(self.pg.dsn)
        db_faults.prepare(self)
        host_faults.prepare(self)
        gpu.prepare(self)  # the fake nvidia-smi and the GPU worker's log
        tracing.prepare(self)  # PostgreSQL logs each session's application_name
        self._record_deploy(
            {
                "version": "v2.4.0",
                "previous": "v2.3.9",
                "author": "release-bot",
                "description": "baseline release",
            },
            at_offset_s=-3600,
        )
        self.peers.start()
        env = {**os.environ, DSN_ENV: self.pg.dsn, **self.peers.service_env()}
        self.port = start_on_free_port(lambda port: self._start_service(port, env), self.port)
        self.peers.start_clients(self.base_url)
        return self

    def _start_service(self, port: int, env: dict[str, str]) -> None:
        """The service on ``port``, answering (raises PortTaken when the port was taken)."""
        self.port, self.base_url = port, f"http://127.0.0.1:{port}"
        log = (self.workdir / "service.out").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aura_ops.sandbox.service",
                "--port",
                str(self.port),
                "--state-dir",
                str(self.workdir / "state"),
                "--dsn-env",
                DSN_ENV,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                out = check_exit_output(self.workdir / "service.out", "service", self.port)
                raise SourceUnavailableError(f"sandbox service exited at start:\n{out}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health/live", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise SourceUnavailableError(
            f"sandbox service did not answer within {self.startup_timeout_s:.0f} s"
        )

    def stop(self) -> None:
        """Stop traffic, the service and PostgreSQL; remove the working directory."""
        host_faults.release(self)  # a stopped (SIGSTOP) API must run again to exit
        self.stop_traffic()
        db_faults.release(self)  # sessions a database fault holds open
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None
        self.peers.stop()
        if self.pg is not None:
            self.pg.stop()
            self.pg = None
        if self._own_dir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults -----------------------------------------------------------------------------
    def inject(self, name: str) -> Fault:
        """Inject a fault from the catalogue (recording its deploy first, if it has one)."""
        if name not in FAULTS:
            raise ConfigError(f"unknown fault {name!r}", hint=f"known: {', '.join(sorted(FAULTS))}")
        fault = FAULTS[name]
        if fault.deploy:
            self._record_deploy(dict(fault.deploy))
        if fault.service:
            r = httpx.post(
                f"{self.base_url}/_sandbox/faults",
                timeout=5.0,
                json={"name": fault.service, "params": dict(fault.params)},
            )
            r.raise_for_status()
        if fault.apply:
            fault.apply(self)
        self.injected.append(fault)
        return fault

    def clear(self) -> None:
        """Switch every injected fault off."""
        for fault in self.injected:
            if fault.service:
                httpx.delete(f"{self.base_url}/_sandbox/faults/{fault.service}", timeout=5.0)
            if fault.revert:
                fault.revert(self)
        self.injected.clear()

    def _record_deploy(self, deploy: dict[str, str], *, at_offset_s: float = 0.0) -> None:
        at = time.time() + at_offset_s
        import datetime as dt

        record = {
            "at": dt.datetime.fromtimestamp(at, dt.UTC).isoformat(),
            "kind": "deploy",
            "service": "aura-api",
            **deploy,
        }
        self.changes_path.parent.mkdir(parents=True, exist_ok=True)
        with self.changes_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    # --- traffic ----------------------------------------------------------------------------
    def traffic(
        self, duration_s: float, *, rps: float = 30.0, seed: int | None = None
    ) -> TrafficStats:
        """Send a realistic request mix for ``duration_s`` seconds (blocking)."""
        stats = TrafficStats()
        stop = threading.Event()
        timer = threading.Timer(duration_s, stop.set)
        timer.start()
        try:
            self._drive(stop, stats, rps, random.Random(seed))
        finally:
            timer.cancel()
        return stats

    def start_traffic(self, *, rps: float = 30.0, seed: int | None = None) -> TrafficStats:
        """Start sending traffic in the background until :meth:`stop_traffic`."""
        self.stop_traffic()
        stats, stop = TrafficStats(), threading.Event()
        thread = threading.Thread(
            target=self._drive,
            args=(stop, stats, rps, random.Random(seed)),
            name="sandbox-traffic",
            daemon=True,
        )
        thread.start()
        self._traffic = (thread, stop, stats)
        return stats

    def stop_traffic(self) -> TrafficStats | None:
        if self._traffic is None:
            return None
        thread, stop, stats = self._traffic
        stop.set()
        thread.join(timeout=10)
        self._traffic = None
        return stats

    def _drive(
        self, stop: threading.Event, stats: TrafficStats, rps: float, rng: random.Random
    ) -> None:
        interval = 1.0 / rps
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            next_at = time.monotonic()
            while not stop.is_set():
                method, path, body = _pick_request(rng)
                headers = {"X-Correlation-ID": uuid.uuid4().hex[:16]}
                try:
                    r = client.request(method, path, json=body, headers=headers)
                    stats.by_status[r.status_code] += 1
                    if r.status_code == 202:
                        self.accepted.append((time.monotonic(), headers["X-Correlation-ID"]))
                except httpx.HTTPError:
                    stats.failures += 1
                stats.sent += 1
                next_at += interval
                stop.wait(max(0.0, next_at - time.monotonic()))

    def environment(self) -> dict[str, Any]:
        """Runbook parameters that point at this sandbox (no secret: the DSN is an env-var name)."""
        return {
            "base_url": self.base_url,
            "metrics_url": f"{self.base_url}/metrics",
            "log_paths": str(self.log_path),
            "changes_path": str(self.changes_path),
            "dsn_env": DSN_ENV,
            "started_at": utcnow_iso(),
            **self.peers.environment(self.base_url),
            "process_pattern": host_faults.process_pattern(self),
            "data_dir": str(host_faults.data_dir(self)),
            "data_quota_gib": host_faults.DATA_QUOTA_GIB,
            "backup_dir": str(host_faults.backup_dir(self)),
            **gpu.environment(self),
            "correlation_id": tracing.correlation_id(self),
            "db_log_paths": tracing.db_log_path(self),
        }

    def kernel_env(self) -> dict[str, str]:
        """Environment variables a runbook's kernel needs to reach this sandbox: the DSN,
        under the name ``environment()["dsn_env"]`` gives (it never becomes a parameter)."""
        return {DSN_ENV: self.dsn, **self.peers.kernel_env()}


def _pick_request(rng: random.Random) -> tuple[str, str, dict[str, Any] | None]:
    roll = rng.random()
    if roll < 0.40:
        return "GET", "/api/projects", None
    if roll < 0.70:
        return "GET", f"/api/projects/{rng.randint(1, 200)}", None
    if roll < 0.90:
        return "POST", "/api/render", {"project_id": rng.randint(1, 200), "preset": "1080p"}
    return "GET", f"/api/jobs/{rng.randint(1, 50)}", None
