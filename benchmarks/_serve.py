"""Shared set-up of the alert benchmarks: the sandbox with its fault, a Prometheus scraping
it, a throwaway aura-ops home pointed at them, and ``aura-ops serve`` processes.

The home (``AURA_OPS_HOME``) holds the real ``high-error-rate`` notebook, an environment
``sandbox`` with the sandbox's URLs, and a routes file sending ``AuraHighErrorRatio`` to the
runbook with the ``namespace`` label as a parameter -- a distinct namespace is a distinct run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from _common import ROOT

__all__ = ["TOKEN", "Target", "alert_doc", "rss_mib", "sandbox_target", "serve"]

TOKEN = "bench-alertmanager-token"


class Target:
    """The sandbox, Prometheus and the home directory pointing at them."""

    def __init__(self, home: Path, params: dict[str, Any], prometheus: bool, env: dict) -> None:
        self.home = home
        self.params = params
        self.prometheus = prometheus
        self.kernel_env = env


@contextlib.contextmanager
def sandbox_target(work: Path, *, rps: float = 20.0) -> Iterator[Target]:
    """Start the sandbox with traffic and the high-error-rate fault, and (when installed) a
    Prometheus scraping it every second; yield the home directory for ``aura-ops serve``."""
    from aura_ops.sandbox import Sandbox, faults_for
    from aura_ops.testing_prometheus import find_prometheus, start_prometheus

    with Sandbox() as sb, contextlib.ExitStack() as stack:
        sb.start_traffic(rps=rps, seed=7)
        prom = None
        if find_prometheus():
            prom = stack.enter_context(start_prometheus([f"{sb.base_url}/metrics"]))
        time.sleep(3)
        sb.inject(faults_for("high-error-rate")[0].name)
        time.sleep(6)  # errors in the logs and two scrapes of them in Prometheus
        env = sb.environment()
        params = {
            "base_url": env["base_url"],
            "metrics_url": "" if prom else env["metrics_url"],
            "prometheus_url": prom.url if prom else "",
            "log_paths": env["log_paths"],
            "changes_path": env["changes_path"],
            "deployment": "aura-api",
        }
        home = work / "home"
        (home / "notebooks").mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "notebooks" / "high-error-rate.ipynb", home / "notebooks")
        (home / "parameters" / "environments").mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "parameters" / "severity.yaml", home / "parameters")
        (home / "parameters" / "environments" / "sandbox.yaml").write_text(
            yaml.safe_dump({"description": "benchmark sandbox", "parameters": params})
        )
        routes = {
            "version": 1,
            "defaults": {"environment": "sandbox", "lookback_minutes": 15},
            "routes": [
                {
                    "name": "error-ratio",
                    "match": {"alertname": "AuraHighErrorRatio"},
                    "runbook": "high-error-rate",
                    "params": {"namespace": {"from": "labels.namespace"}},
                }
            ],
            "receivers": {"alertmanager": {"bearer_token_env": "AURA_OPS_ALERTMANAGER_TOKEN"}},
        }
        (home / "parameters" / "routes.yaml").write_text(yaml.safe_dump(routes))
        yield Target(home, params, prom is not None, sb.kernel_env())


def _free_port() -> int:
    from aura_ops.sandbox import free_port

    return int(free_port())


@contextlib.contextmanager
def serve(target: Target, work: Path, *, warm: int = 0, workers: int = 2) -> Iterator[Any]:
    """``aura-ops serve`` as a real process (``warm``: AURA_OPS_WARM_KERNELS); yields
    (process, base URL, output root)."""
    port = _free_port()
    out = Path(tempfile.mkdtemp(prefix="serve-", dir=work))
    env = {
        **os.environ,
        **target.kernel_env,
        "AURA_OPS_HOME": str(target.home),
        "AURA_OPS_ALERTMANAGER_TOKEN": TOKEN,
        "AURA_OPS_WARM_KERNELS": str(warm),
        "MPLCONFIGDIR": str(work / "mpl"),
    }
    cmd = [sys.executable, "-m", "aura_ops.cli", "serve", "--port", str(port),
           "--db", str(out / "runs.db"), "--output", str(out / "outputs"),
           "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
    log = (out / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"aura-ops serve exited:\n{(out / 'serve.log').read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield proc, url, out / "outputs"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def alert_doc(namespace: str, fingerprint: str, starts_at: dt.datetime | None = None) -> dict:
    """One Alertmanager v4 delivery of AuraHighErrorRatio for ``namespace``."""
    starts = (starts_at or dt.datetime.now(dt.UTC)).isoformat().replace("+00:00", "Z")
    alert = {
        "status": "firing",
        "labels": {
            "alertname": "AuraHighErrorRatio",
            "job": "aura",
            "severity": "critical",
            "namespace": namespace,
        },  # fmt: skip
        "annotations": {"summary": "5xx above 5 %", "runbook": "high-error-rate"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint,
    }
    return {"version": "4", "status": "firing", "receiver": "aura-ops",
            "groupLabels": {"alertname": "AuraHighErrorRatio"}, "alerts": [alert]}  # fmt: skip


def rss_mib(pid: int) -> float:
    """Resident memory of one process, MiB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
