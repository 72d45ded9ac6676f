"""Local host diagnostics: memory and processes here; disk per mount and the biggest
directories and files (:mod:`aura_ops.system_disk`) and GPU memory and CUDA OOM errors
(:mod:`aura_ops.system_gpu`, :mod:`aura_ops.system_gpu_logs`) re-exported, so
``aura_ops.system`` is the one place to import from.

What the seeds' quick reference runs by hand (``df -h``, ``free -m``, ``ps aux | grep …``,
``nvidia-smi``), read straight from the kernel on Linux: ``/proc/mounts`` + ``statvfs`` for
disks (bytes *and* inodes: "No space left on device" is either), ``/proc/meminfo`` plus the
cgroup memory limit for memory (a container is killed at its cgroup limit, not at the host's
total), ``/proc/<pid>`` for processes. Standard library only.

Nothing here can hang the runbook: every ``statvfs`` runs in a daemon thread with a deadline
(a stale NFS mount blocks forever), the directory walk has a time and entry budget and says
"partial" when it runs out, and ``nvidia-smi`` runs with a timeout. ``check_*`` functions
return findings and never raise.
"""

from __future__ import annotations

import os
import pwd
import re
from pathlib import Path
from typing import Any

import pandas as pd

from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.redact import default_redactor
from aura_ops.system_disk import (
    PSEUDO_FS,
    DirScan,
    _judge,
    _kwargs,
    check_disk_usage,
    check_largest,
    fetch_disk_usage,
    fetch_largest,
)
from aura_ops.system_gpu import (
    APP_QUERY_FIELDS,
    GPU_QUERY_FIELDS,
    check_cuda_oom,
    check_gpu_memory,
    fetch_gpus,
    parse_apps_csv,
    parse_cuda_oom,
    parse_gpu_csv,
    parse_nvidia_smi,
    run_command,
)
from aura_ops.system_gpu_logs import check_cuda_oom_logs

__all__ = [
    "APP_QUERY_FIELDS",
    "DirScan",
    "GPU_QUERY_FIELDS",
    "PSEUDO_FS",
    "check_cuda_oom",
    "check_cuda_oom_logs",
    "check_disk_usage",
    "check_gpu_memory",
    "check_largest",
    "check_memory",
    "check_processes",
    "fetch_disk_usage",
    "fetch_gpus",
    "fetch_largest",
    "fetch_memory",
    "fetch_processes",
    "parse_apps_csv",
    "parse_cuda_oom",
    "parse_gpu_csv",
    "parse_meminfo",
    "parse_nvidia_smi",
    "run_command",
]

MIB = 1024**2


# -- memory --------------------------------------------------------------------------------------
def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` → ``{"MemTotal": bytes, …}`` (kB values converted to bytes)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+):\s+(\d+)(?:\s+kB)?", line)
        if m:
            out[m[1]] = int(m[2]) * (1024 if line.rstrip().endswith("kB") else 1)
    return out


def _cgroup_memory(root: Path) -> tuple[int | None, int | None]:
    """(limit, working set) in bytes from cgroup v2 or v1; (None, None) when unlimited."""
    for limit_f, usage_f, inactive_key in (
        ("memory.max", "memory.current", "inactive_file"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "total_inactive_file"),
    ):
        limit_path = root / limit_f
        if not limit_path.exists():
            continue
        raw = limit_path.read_text().strip()
        if raw == "max" or not raw.isdigit() or int(raw) >= 2**62:
            return None, None
        usage = int((root / usage_f).read_text().strip())
        stat_path = root / Path(limit_f).parent / "memory.stat"
        stats = (
            parse_meminfo(stat_path.read_text().replace(" ", ": ")) if stat_path.exists() else {}
        )
        return int(raw), max(0, usage - stats.get(inactive_key, 0))
    return None, None


def fetch_memory(
    *, meminfo_path: str = "/proc/meminfo", cgroup_root: str = "/sys/fs/cgroup"
) -> dict[str, Any]:
    """``free -m`` in MiB, plus this cgroup's limit and working set when one is set.

    ``used`` is total − available (as current ``free``). Keys: total_mib, used_mib,
    available_mib, free_mib, buff_cache_mib, swap_total_mib, swap_used_mib, used_pct,
    cgroup_limit_mib, cgroup_used_mib, cgroup_used_pct (None without a limit).
    """
    info = parse_meminfo(Path(meminfo_path).read_text())
    total = info["MemTotal"]
    available = info.get("MemAvailable", info.get("MemFree", 0))
    limit, working = _cgroup_memory(Path(cgroup_root))
    if limit is not None and limit >= total:
        limit = working = None

    def mib(v: int | None) -> float | None:  # noqa: E306
        return None if v is None else round(v / MIB, 1)

    return {
        "total_mib": mib(total),
        "used_mib": mib(total - available),
        "available_mib": mib(available),
        "free_mib": mib(info.get("MemFree", 0)),
        "buff_cache_mib": mib(
            info.get("Buffers", 0) + info.get("Cached", 0) + info.get("SReclaimable", 0)
        ),
        "swap_total_mib": mib(info.get("SwapTotal", 0)),
        "swap_used_mib": mib(info.get("SwapTotal", 0) - info.get("SwapFree", 0)),
        "used_pct": round(100 * (total - available) / total, 1),
        "cgroup_limit_mib": mib(limit),
        "cgroup_used_mib": mib(working),
        "cgroup_used_pct": round(100 * working / limit, 1)
        if limit and working is not None
        else None,
    }


def check_memory(
    *,
    used_warn_pct: float = 85,
    used_crit_pct: float = 95,
    meminfo_path: str = "/proc/meminfo",
    cgroup_root: str = "/sys/fs/cgroup",
) -> list[Finding]:
    """Host memory (``free -m``) and, in a container, memory against its cgroup limit.

    The worse of the two is judged: WARNING from ``used_warn_pct`` %, CRITICAL from
    ``used_crit_pct`` %. At the cgroup limit the kernel OOM-kills inside the container.
    """
    extra = _kwargs(
        used_warn_pct=used_warn_pct,
        used_crit_pct=used_crit_pct,
        meminfo_path=meminfo_path if meminfo_path != "/proc/meminfo" else None,
        cgroup_root=cgroup_root if cgroup_root != "/sys/fs/cgroup" else None,
    )
    reproduce = f"check_memory({extra})"
    source = f"{meminfo_path} + {cgroup_root}/memory.max (free -m)"
    try:
        mem = fetch_memory(meminfo_path=meminfo_path, cgroup_root=cgroup_root)
    except Exception as exc:  # unreadable or malformed: UNKNOWN, never an exception
        return [unknown("system.memory", "memory", exc, source=source, reproduce=reproduce)]
    host = (
        f"host memory {mem['used_pct']:g} % used ({mem['used_mib'] / 1024:.1f} of "
        f"{mem['total_mib'] / 1024:.1f} GiB, {mem['available_mib'] / 1024:.1f} GiB available)"
    )
    pct, summary = mem["used_pct"], host
    if mem["cgroup_used_pct"] is not None:
        cgroup = (
            f"container {mem['cgroup_used_pct']:g} % of its {mem['cgroup_limit_mib']:g} MiB "
            f"limit ({mem['cgroup_used_mib']:g} MiB working set)"
        )
        if mem["cgroup_used_pct"] >= pct:
            pct, summary = mem["cgroup_used_pct"], f"{cgroup}; {host}"
        else:
            summary = f"{host}; {cgroup}"
    if mem["swap_used_mib"]:
        summary += f"; swap {mem['swap_used_mib']:g} MiB used"
    status = _judge(pct, used_warn_pct, used_crit_pct)
    hint = (
        "Find the biggest processes with check_processes(); a process that only grows is a "
        "leak: capture a heap dump, then restart it"
    )
    return [
        Finding(
            check="system.memory",
            subject="memory",
            status=status,
            summary=summary[0].upper() + summary[1:],
            observed=pct,
            expected=f"< {used_warn_pct:g} %",
            evidence=(Evidence.json(mem, "memory"),),
            source=source,
            reproduce=reproduce,
            hint=hint if status > Status.OK else "",
        )
    ]


# -- processes -----------------------------------------------------------------------------------
def _user(uid: int, cache: dict[int, str]) -> str:
    if uid not in cache:
        try:
            cache[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            cache[uid] = str(uid)
    return cache[uid]


def fetch_processes(
    pattern: str | None = None, *, proc_root: str = "/proc", top_n: int | None = None
) -> pd.DataFrame:
    """``ps aux`` by resident memory: pid, ppid, user, name, state, rss_mib, cpu_s, threads,
    cmdline (secrets masked, 200 characters). ``pattern`` is a regex over name and cmdline,
    like ``ps aux | grep -E "(dotnet|node|redis|ffmpeg)"``.
    """
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    wanted = re.compile(pattern) if pattern else None
    users: dict[int, str] = {}
    rows: list[dict[str, Any]] = []
    redactor = default_redactor()
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
            argv = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
            uid = entry.stat().st_uid
        except OSError:  # the process ended while we looked
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        cmd = redactor.text(argv.decode(errors="replace").strip())[:200] or f"[{name}]"
        if wanted and not (wanted.search(name) or wanted.search(cmd)):
            continue
        rows.append(
            {
                "pid": int(entry.name),
                "ppid": int(fields[1]),
                "user": _user(uid, users),
                "name": name,
                "state": fields[0],
                "rss_mib": round(int(fields[21]) * page / MIB, 1),
                "cpu_s": round((int(fields[11]) + int(fields[12])) / tick, 1),
                "threads": int(fields[17]),
                "cmdline": cmd,
            }
        )
    columns = ["pid", "ppid", "user", "name", "state", "rss_mib", "cpu_s", "threads", "cmdline"]
    frame = pd.DataFrame(rows, columns=columns).sort_values("rss_mib", ascending=False)
    return frame.head(top_n).reset_index(drop=True) if top_n else frame.reset_index(drop=True)


def check_processes(
    pattern: str | None = None, *, min_count: int = 0, top_n: int = 10, proc_root: str = "/proc"
) -> list[Finding]:
    """The biggest processes by memory (``ps aux``); CRITICAL if fewer than ``min_count`` match.

    ``check_processes("dotnet|node|redis|ffmpeg", min_count=1)`` asks "is the service running
    at all?"; zombies (state Z) are counted in the summary.
    """
    extra = _kwargs(min_count=min_count or None, top_n=top_n if top_n != 10 else None)
    reproduce = (
        f"check_processes({', '.join(filter(None, [repr(pattern) if pattern else '', extra]))})"
    )
    source = f"{proc_root}/<pid>/stat (ps aux" + (f" | grep -E '{pattern}')" if pattern else ")")
    try:
        frame = fetch_processes(pattern, proc_root=proc_root)
    except Exception as exc:  # no /proc, a bad pattern: UNKNOWN, never an exception
        return [unknown("system.processes", "processes", exc, source=source, reproduce=reproduce)]
    zombies = int((frame["state"] == "Z").sum())
    what = f"matching {pattern!r}" if pattern else "running"
    top = ", ".join(f"{r.name} (pid {r.pid}) {r.rss_mib:g} MiB" for r in frame.head(3).itertuples())
    status = Status.CRITICAL if len(frame) < min_count else Status.OK
    summary = (
        f"{len(frame)} process{'es' * (len(frame) != 1)} {what}"
        + (f" (expected ≥ {min_count})" if status > Status.OK else "")
        + (f"; by memory: {top}" if top else "")
        + (f"; {zombies} zombie{'s' * (zombies != 1)}" if zombies else "")
    )
    return [
        Finding(
            check="system.processes",
            subject=f"processes {what}",
            status=status,
            summary=summary,
            observed=len(frame),
            expected=f"≥ {min_count}" if min_count else None,
            evidence=(Evidence.table(frame.head(top_n), f"top {top_n} by memory"),),
            source=source,
            reproduce=reproduce,
            hint="The service is not running: check its unit/container logs and restart it"
            if status > Status.OK
            else "",
        )
    ]
