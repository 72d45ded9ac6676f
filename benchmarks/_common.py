"""Helpers shared by the benchmark scripts: machine description, child processes with their
peak memory, and small statistics. Not part of the aura_ops package."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["DATA", "ROOT", "machine", "pct", "print_machine", "run_timed", "save_result"]

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / ".data"


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, load and software versions of this machine."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": cpu or "unknown",
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "load_avg_1m": round(load[0], 2),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def print_machine(title: str) -> dict[str, Any]:
    """Print the benchmark's title and the machine it runs on; return the description."""
    m = machine()
    print(f"== {title}")
    print(
        f"   machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"load {m['load_avg_1m']} (1 min), Python {m['python']}, {m['platform']}"
    )
    return m


def run_timed(
    cmd: list[str] | str,
    *,
    shell: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """Run a command to completion: wall seconds, CPU seconds (user + system) of its process
    tree, the peak RSS (MiB) of its largest process, and its output.

    The peak comes from GNU ``time`` when installed: ``wait4`` on a child forked from this
    (larger) process would count this process's memory at the fork.
    """
    gnu_time = Path("/usr/bin/time")
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as peak,
    ):
        if gnu_time.exists():
            argv = ["bash", "-c", cmd] if shell else list(cmd)
            cmd, shell = [str(gnu_time), "-f", "%M", "-o", peak.name, *argv], False
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            shell=shell,
            executable="/bin/bash" if shell else None,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        timer = threading.Timer(timeout_s, lambda: _kill_group(proc.pid))
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        measured = peak.read().strip().splitlines()
        peak_kib = int(measured[-1]) if measured and measured[-1].isdigit() else ru.ru_maxrss
        return {
            "wall_s": wall,
            "cpu_s": ru.ru_utime + ru.ru_stime,
            "peak_mib": peak_kib / 1024,
            "rc": proc.returncode,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace")[-3000:],
        }


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linear interpolation."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=1000, method="inclusive")[
        max(0, min(998, round(q * 1000) - 1))
    ]


def save_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/.data/results-<name>.json`` (read by ``report.py``)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"results-{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
