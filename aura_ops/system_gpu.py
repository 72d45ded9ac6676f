"""GPU memory and processes from ``nvidia-smi``, and CUDA out-of-memory errors from logs.

The "GPU Worker Out of Memory" runbook says: check the worker logs for CUDA errors, run
``nvidia-smi`` and look for high memory use or leftover processes. Here that is:

- :func:`check_gpu_memory` -- memory used per GPU against thresholds, naming the GPU and the
  processes holding the most memory. It runs ``nvidia-smi --query-gpu=… --format=csv,noheader,
  nounits`` and ``--query-compute-apps=…`` (with a timeout, killing the whole process group
  if it hangs), or takes their captured text, or the plain ``nvidia-smi`` table.
- :func:`check_cuda_oom` -- the ``CUDA out of memory. Tried to allocate …`` message from a log,
  as figures: how much was asked for, the capacity, what was free and who held the rest.

Parsers (``parse_*``) are pure and accept the CSV with or without header and units. A missing
``nvidia-smi``, a hang or a non-zero exit is an ``UNKNOWN`` finding, never an exception.
:mod:`aura_ops.system` re-exports everything public here.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from aura_ops.errors import AuraOpsError, SourceTimeoutError, SourceUnavailableError
from aura_ops.findings import Evidence, Finding, Status, unknown

__all__ = [
    "APP_QUERY_FIELDS",
    "GPU_QUERY_FIELDS",
    "check_cuda_oom",
    "check_gpu_memory",
    "fetch_gpus",
    "parse_apps_csv",
    "parse_cuda_oom",
    "parse_gpu_csv",
    "parse_nvidia_smi",
    "run_command",
]

GPU_QUERY_FIELDS = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "temperature.gpu",
)
APP_QUERY_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")

#: query field → DataFrame column (units in the name); other fields: dots become underscores.
COLUMNS = {
    "memory.total": "memory_total_mib",
    "memory.used": "memory_used_mib",
    "memory.free": "memory_free_mib",
    "memory.reserved": "memory_reserved_mib",
    "utilization.gpu": "utilization_gpu_pct",
    "utilization.memory": "utilization_memory_pct",
    "temperature.gpu": "temperature_gpu_c",
    "power.draw": "power_draw_w",
    "power.limit": "power_limit_w",
    "used_memory": "used_memory_mib",
    "used_gpu_memory": "used_memory_mib",  # the header nvidia-smi prints for used_memory
}
_MISSING = {"", "N/A", "[N/A]", "[Not Supported]", "Not Supported", "[Unknown Error]"}


def run_command(argv: list[str], *, timeout_s: float) -> str:
    """Run ``argv`` and return its stdout; never outlives ``timeout_s``.

    The command runs in its own session so that a hang kills it *and* its children (a shell
    wrapper's ``sleep`` would otherwise keep the pipe open). Raises
    :class:`SourceUnavailableError` (not found, non-zero exit) or :class:`SourceTimeoutError`.
    """
    name = Path(argv[0]).name
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise SourceUnavailableError(
            f"{name} not found", hint=f"No NVIDIA driver tools on this host, or {name} not on PATH"
        ) from exc
    except PermissionError as exc:
        raise SourceUnavailableError(f"{name} is not executable: {exc}") from exc
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=2)
        raise SourceTimeoutError(
            f"{name} did not answer within {timeout_s:g} s",
            hint="A hung driver often shows Xid errors in dmesg; the GPU may need a reset",
        ) from exc
    if proc.returncode != 0:
        first = next((ln.strip() for ln in (out + "\n" + err).splitlines() if ln.strip()), "")
        raise SourceUnavailableError(f"{name} exited with status {proc.returncode}: {first}")
    return out


def _value(text: str) -> Any:
    text = text.strip()
    if text in _MISSING:
        return None
    number = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(?:MiB|%|W|MHz|C)?", text)
    if number:
        num = float(number.group(1))
        return int(num) if num.is_integer() and "." not in number.group(1) else num
    return text


def _parse_csv(text: str, fields: tuple[str, ...] | None) -> pd.DataFrame:
    rows = [r for r in csv.reader(io.StringIO(text), skipinitialspace=True) if r]
    header = [re.sub(r"\s*\[.*\]$", "", h.strip()) for h in rows[0]] if rows else []
    if fields is None:
        fields, rows = tuple(header), rows[1:]
    elif rows and set(header) & (set(fields) | {"used_gpu_memory"}):
        rows = rows[1:]
    columns = [COLUMNS.get(f, f.replace(".", "_")) for f in fields]
    records = [dict(zip(columns, (_value(v) for v in row), strict=False)) for row in rows]
    return pd.DataFrame(records, columns=columns)


def parse_gpu_csv(text: str, fields: tuple[str, ...] | None = None) -> pd.DataFrame:
    """``nvidia-smi --query-gpu=… --format=csv[,noheader][,nounits]`` → one row per GPU.

    Without ``fields`` the first line must be the header. Columns carry units:
    ``memory_used_mib``, ``utilization_gpu_pct``, ``temperature_gpu_c``; ``[N/A]`` is None.
    """
    return _parse_csv(text, fields)


def parse_apps_csv(text: str, fields: tuple[str, ...] | None = None) -> pd.DataFrame:
    """``nvidia-smi --query-compute-apps=…`` → pid, process_name, used_memory_mib, …"""
    return _parse_csv(text, fields)


_GPU_ROW = re.compile(r"^\|\s+(\d+)\s+(.+?)\s+(On|Off)\s+\|\s+(\S+)\s+(On|Off)\s+\|")
_PROC_ROW = re.compile(
    r"^\|\s+(\d+)\s+(?:(\S+)\s+(\S+)\s+)?(\d+)\s+(C\+G|M\+C|C|G|M)\s+(.*?)\s+(\d+MiB|N/A)\s*\|$"
)


def parse_nvidia_smi(text: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The plain ``nvidia-smi`` table → (GPUs, processes), same columns as the CSV parsers.

    The table does not show free memory: ``memory_free_mib`` is None there.
    """
    gpus, procs = [], []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if (m := _GPU_ROW.match(line)) and i + 1 < len(lines):
            nxt = lines[i + 1]
            mem = re.search(r"(\d+)MiB\s*/\s*(\d+)MiB", nxt)
            util = re.search(r"(\d+)%\s+\S+\s*\|\s*$", nxt)
            temp = re.search(r"\s(\d+)C\s", nxt)
            gpus.append(
                {
                    "index": int(m.group(1)),
                    "name": m.group(2),
                    "bus_id": m.group(4),
                    "memory_total_mib": int(mem.group(2)) if mem else None,
                    "memory_used_mib": int(mem.group(1)) if mem else None,
                    "memory_free_mib": None,
                    "utilization_gpu_pct": int(util.group(1)) if util else None,
                    "temperature_gpu_c": int(temp.group(1)) if temp else None,
                }
            )
        elif p := _PROC_ROW.match(line):
            memory = p.group(7)
            procs.append(
                {
                    "gpu": int(p.group(1)),
                    "pid": int(p.group(4)),
                    "type": p.group(5),
                    "process_name": p.group(6),
                    "used_memory_mib": int(memory[:-3]) if memory.endswith("MiB") else None,
                }
            )
    gpu_cols = [
        "index",
        "name",
        "bus_id",
        "memory_total_mib",
        "memory_used_mib",
        "memory_free_mib",
        "utilization_gpu_pct",
        "temperature_gpu_c",
    ]
    proc_cols = ["gpu", "pid", "type", "process_name", "used_memory_mib"]
    return pd.DataFrame(gpus, columns=gpu_cols), pd.DataFrame(procs, columns=proc_cols)


def fetch_gpus(
    *, nvidia_smi: str = "nvidia-smi", timeout_s: float = 10.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the two ``nvidia-smi`` queries on this host → (GPUs, compute processes).

    Processes get an ``alive`` column: whether their pid exists in this PID namespace (a
    process listed by the driver but gone here is in another container, or a zombie).
    """
    fmt = "--format=csv,noheader,nounits"
    gpu_text = run_command(
        [nvidia_smi, f"--query-gpu={','.join(GPU_QUERY_FIELDS)}", fmt], timeout_s=timeout_s
    )
    app_text = run_command(
        [nvidia_smi, f"--query-compute-apps={','.join(APP_QUERY_FIELDS)}", fmt], timeout_s=timeout_s
    )
    gpus, apps = (
        parse_gpu_csv(gpu_text, GPU_QUERY_FIELDS),
        parse_apps_csv(app_text, APP_QUERY_FIELDS),
    )
    apps["alive"] = [os.path.exists(f"/proc/{pid}") for pid in apps["pid"]]
    return gpus, apps


def _gpu_processes(gpu: pd.Series, apps: pd.DataFrame, gpu_count: int) -> pd.DataFrame:
    if apps.empty:
        return apps
    if "gpu_uuid" in apps and "uuid" in gpu and apps["gpu_uuid"].notna().any():
        apps = apps[apps["gpu_uuid"] == gpu["uuid"]]
    elif "gpu" in apps:
        apps = apps[apps["gpu"] == gpu["index"]]
    elif gpu_count > 1:
        return apps.iloc[0:0]
    return apps.sort_values("used_memory_mib", ascending=False, na_position="last")


def _gpu_finding(
    gpu: pd.Series, procs: pd.DataFrame, base: dict[str, Any], warn: float, crit: float
) -> Finding:
    total, used = gpu.get("memory_total_mib"), gpu.get("memory_used_mib")
    label = f"GPU {gpu.get('index')} ({gpu.get('name')})"
    if total is None or used is None or pd.isna(total) or pd.isna(used) or not total:
        return unknown(
            "system.gpu_memory",
            label,
            "nvidia-smi reported no memory figures",
            source=base["source"],
            reproduce=base["reproduce"],
        )
    free = gpu.get("memory_free_mib")
    known_free = free is not None and not pd.isna(free)
    spare = int(free) if known_free else int(total - used)  # the table shows no free figure
    pct = 100.0 * float(used) / float(total)
    status = Status.CRITICAL if pct >= crit else Status.WARNING if pct >= warn else Status.OK
    top = ", ".join(
        f"pid {r.pid} {r.process_name} {_mib(r.used_memory_mib)} MiB"
        for r in procs.head(3).itertuples()
    )
    summary = (
        f"{label}: {int(used)} of {int(total)} MiB used ({pct:.1f} %)"
        + (f", {spare} MiB free; " if known_free else "; ")
        + (f"top: {top}" if top else "no compute processes")
    )
    evidence = [Evidence.table(gpu.to_frame().T, label)]
    if not procs.empty:
        evidence.append(Evidence.table(procs, f"compute processes on {label}"))
    hint = (
        f"A new allocation over {spare} MiB fails with CUDA out of memory: find what holds it "
        "(a finished job that did not exit, a zombie worker) and restart that worker"
    )
    return Finding(
        **base,
        subject=label,
        status=status,
        summary=summary,
        observed=round(pct, 1),
        expected=f"< {warn:g} % used",
        evidence=tuple(evidence),
        hint=hint if status > Status.OK else "",
    )


def _mib(value: Any) -> str:
    return "?" if value is None or pd.isna(value) else str(int(value))


def _read_given(text: str | os.PathLike[str]) -> tuple[str, str]:
    if isinstance(text, os.PathLike):
        return Path(text).read_text(), repr(str(text))
    return text, "<captured nvidia-smi output>"


def check_gpu_memory(
    text: str | os.PathLike[str] | None = None,
    apps_text: str | os.PathLike[str] | None = None,
    *,
    used_warn_pct: float = 85,
    used_crit_pct: float = 95,
    nvidia_smi: str = "nvidia-smi",
    timeout_s: float = 10.0,
) -> list[Finding]:
    """GPU memory used per GPU: WARNING from ``used_warn_pct`` %, CRITICAL from ``used_crit_pct``.

    With no ``text``, runs ``nvidia-smi`` on this host. Otherwise ``text`` is captured output
    (or a path to it): the ``--query-gpu`` CSV (then ``apps_text`` is the
    ``--query-compute-apps`` CSV) or the plain ``nvidia-smi`` table. One finding per GPU,
    naming it and the processes holding the most memory.
    """
    thresholds = f"used_warn_pct={used_warn_pct:g}, used_crit_pct={used_crit_pct:g}"
    args = []
    try:
        if text is None:
            source = f"{nvidia_smi} --query-gpu={','.join(GPU_QUERY_FIELDS)} + --query-compute-apps"
            gpus, apps = fetch_gpus(nvidia_smi=nvidia_smi, timeout_s=timeout_s)
        else:
            body, shown = _read_given(text)
            args.append(shown)
            source = "nvidia-smi output given to the check"
            if "NVIDIA-SMI" in body and "|" in body:
                gpus, apps = parse_nvidia_smi(body)
            else:
                gpus, apps = parse_gpu_csv(body), pd.DataFrame()
            if apps_text is not None:
                apps_body, apps_shown = _read_given(apps_text)
                apps = parse_apps_csv(apps_body)
                args.append(apps_shown)
        reproduce = f"check_gpu_memory({', '.join([*args, thresholds])})"
        if gpus.empty:
            raise SourceUnavailableError("nvidia-smi listed no GPUs")
        base: dict[str, Any] = {
            "check": "system.gpu_memory",
            "source": source,
            "reproduce": reproduce,
        }
        return [
            _gpu_finding(
                gpu, _gpu_processes(gpu, apps, len(gpus)), base, used_warn_pct, used_crit_pct
            )
            for _, gpu in gpus.iterrows()
        ]
    except Exception as exc:  # missing, hung, failing or garbled: UNKNOWN, never raised
        reproduce = f"check_gpu_memory({', '.join([*args, thresholds])})"
        reason = exc.message if isinstance(exc, AuraOpsError) else exc
        hint = exc.hint if isinstance(exc, AuraOpsError) else ""
        return [
            unknown(
                "system.gpu_memory",
                "GPUs",
                reason,
                source=nvidia_smi,
                hint=hint,
                reproduce=reproduce,
            )
        ]


_SIZE = r"([\d.]+)\s*(bytes|B|KiB|MiB|GiB|TiB)"
_UNITS = {
    "bytes": 1 / 1024**3,
    "B": 1 / 1024**3,
    "KiB": 1 / 1024**2,
    "MiB": 1 / 1024,
    "GiB": 1.0,
    "TiB": 1024.0,
}


def _gib(match: re.Match[str] | None, group: int = 1) -> float | None:
    if match is None:
        return None
    return round(float(match.group(group)) * _UNITS[match.group(group + 1)], 6)


def parse_cuda_oom(text: str) -> list[dict[str, Any]]:
    """Every ``CUDA out of memory`` message in ``text`` as figures in GiB.

    Keys: ``gpu``, ``tried_gib``, ``total_gib``, ``free_gib``, ``this_process_gib``,
    ``allocated_gib`` (by PyTorch), ``reserved_gib`` (reserved but unallocated, or reserved in
    total for old messages), ``processes`` (``[{"pid", "gib"}]``), ``line``. Reads both the
    PyTorch ≥ 2.1 wording and the older ``(GPU 0; X total capacity; …)`` one.
    """
    found = []
    for line in text.splitlines():
        if "CUDA out of memory" not in line:
            continue
        gpu = re.search(r"GPU (\d+)", line)
        found.append(
            {
                "gpu": int(gpu.group(1)) if gpu else None,
                "tried_gib": _gib(re.search(r"Tried to allocate " + _SIZE, line)),
                "total_gib": _gib(
                    re.search(r"total capacity of " + _SIZE, line)
                    or re.search(_SIZE + r" total capacity", line)
                ),
                "free_gib": _gib(
                    re.search(r"of which " + _SIZE + r" is free", line)
                    or re.search(_SIZE + r" free", line)
                ),
                "this_process_gib": _gib(re.search(r"this process has " + _SIZE, line)),
                "allocated_gib": _gib(
                    re.search(_SIZE + r" is allocated by PyTorch", line)
                    or re.search(_SIZE + r" already allocated", line)
                ),
                "reserved_gib": _gib(
                    re.search(_SIZE + r" is reserved by PyTorch", line)
                    or re.search(_SIZE + r" reserved in total", line)
                ),
                "processes": [
                    {"pid": int(m.group(1)), "gib": _gib(m, 2)}
                    for m in re.finditer(r"Process (\d+) has " + _SIZE + " memory in use", line)
                ],
                "line": line.strip()[:600],
            }
        )
    return found


def _g(value: float | None) -> str:
    """GiB figures as the message shows them: ``20 GiB``, ``3.19 MiB`` below 1 GiB."""
    if value is None:
        return "?"
    return f"{value:g} GiB" if value >= 1 or value == 0 else f"{value * 1024:.3g} MiB"


def _oom_hint(oom: dict[str, Any]) -> str:
    others = sum(p["gib"] or 0 for p in oom["processes"])
    total, tried = oom["total_gib"] or 0, oom["tried_gib"] or 0
    if others and total and others >= total / 2:
        pids = ", ".join(f"pid {p['pid']} ({_g(p['gib'])})" for p in oom["processes"])
        return (
            f"Another process holds the GPU memory ({pids}): a finished job that did not "
            "exit or a zombie worker; free it, then retry"
        )
    if total and tried > total:
        return "The allocation alone exceeds the GPU: reduce the batch size or resolution"
    return (
        "Reduce the batch size; if much memory is reserved but unallocated, set "
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"
    )


def check_cuda_oom(log_text: str, *, subject: str = "worker log") -> list[Finding]:
    """CRITICAL when ``log_text`` holds a CUDA out-of-memory error, with its figures."""
    reproduce = f"check_cuda_oom(<{subject} text>, subject={subject!r})"
    base: dict[str, Any] = {
        "check": "system.cuda_oom",
        "subject": subject,
        "reproduce": reproduce,
        "source": f"'CUDA out of memory' in {subject}",
    }
    ooms = parse_cuda_oom(log_text)
    if not ooms:
        lines = len(log_text.splitlines())
        summary = f"No CUDA out-of-memory error in {lines} line{'s' * (lines != 1)} of {subject}"
        return [Finding(**base, status=Status.OK, summary=summary, observed=0, expected=0)]
    last = ooms[-1]
    holders = ", ".join(f"process {p['pid']} holds {_g(p['gib'])}" for p in last["processes"])
    times = f" ({len(ooms)} times)" if len(ooms) > 1 else ""
    tried, free, total = (_g(last[k]) for k in ("tried_gib", "free_gib", "total_gib"))
    summary = (
        f"CUDA OOM on GPU {last['gpu']}{times}: tried to allocate {tried} with {free} free "
        f"of {total}" + (f"; {holders}" if holders else "")
    )
    table = [{k: v for k, v in o.items() if k not in ("line", "processes")} for o in ooms]
    evidence = (
        Evidence.table(table, "CUDA out-of-memory errors"),
        Evidence.text(last["line"], "last CUDA out-of-memory message"),
    )
    return [
        Finding(
            **base,
            status=Status.CRITICAL,
            summary=summary,
            observed=len(ooms),
            expected=0,
            evidence=evidence,
            hint=_oom_hint(last),
        )
    ]
