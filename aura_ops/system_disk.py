"""Disk space per filesystem and the biggest directories and files under a path.

``df -h`` / ``df -i`` from ``/proc/mounts`` + ``statvfs`` (bytes *and* inodes: "No space left
on device" is either), and ``du -xh --max-depth=3 | sort -h`` as a bounded walk. Neither can
hang a runbook: every ``statvfs`` runs in a daemon thread with a deadline (a stale NFS mount
blocks forever) and the walk stops at a time and entry budget, saying "partial".
:mod:`aura_ops.system` re-exports everything public here.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
import re
import stat
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from aura_ops.findings import Evidence, Finding, Status, unknown

__all__ = [
    "PSEUDO_FS",
    "DirScan",
    "check_disk_usage",
    "check_largest",
    "fetch_disk_usage",
    "fetch_largest",
]

GIB = 1024**3
MIB = 1024**2
#: Filesystems that hold no user data (df hides most of them too); squashfs images are
#: always 100 % full by design.
PSEUDO_FS = frozenset(
    {
        "proc",
        "sysfs",
        "devpts",
        "cgroup",
        "cgroup2",
        "mqueue",
        "debugfs",
        "tracefs",
        "securityfs",
        "pstore",
        "bpf",
        "configfs",
        "fusectl",
        "hugetlbfs",
        "autofs",
        "binfmt_misc",
        "nsfs",
        "rpc_pipefs",
        "devtmpfs",
        "squashfs",
        "efivarfs",
        "selinuxfs",
        "ramfs",
        "nfsd",
    }
)


def _judge(value: float, warn: float, crit: float) -> Status:
    return Status.CRITICAL if value >= crit else Status.WARNING if value >= warn else Status.OK


def _human(size: float) -> str:
    """Bytes as ``du -h`` would: ``61.3 MiB``, ``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _kwargs(**kwargs: Any) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None)


def _mounts(mounts_path: str, include_pseudo: bool) -> list[tuple[str, str, str]]:
    out = []
    for line in Path(mounts_path).read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mount, fstype = (
            re.sub(r"\\(\d{3})", lambda m: chr(int(m[1], 8)), p) for p in parts[:3]
        )
        if include_pseudo or fstype not in PSEUDO_FS:
            out.append((device, mount, fstype))
    return out


def _statvfs_all(paths: list[str], timeout_s: float) -> dict[str, os.statvfs_result | Exception]:
    """``statvfs`` of each path in parallel daemon threads; missing keys did not return."""
    results: dict[str, os.statvfs_result | Exception] = {}

    def probe(path: str) -> None:
        try:
            results[path] = os.statvfs(path)
        except OSError as exc:
            results[path] = exc

    threads = [threading.Thread(target=probe, args=(p,), daemon=True) for p in paths]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return dict(results)


def fetch_disk_usage(
    paths: Iterable[str] | None = None,
    *,
    include_pseudo: bool = False,
    mounts_path: str = "/proc/mounts",
    timeout_s: float = 5.0,
) -> pd.DataFrame:
    """``df -h`` plus ``df -i`` per mounted filesystem (or per given path) as a DataFrame.

    Columns: filesystem, type, mount, size_gib, used_gib, avail_gib, used_pct (as df: used /
    (used + available to users)), inodes_used_pct, and ``error`` (e.g. "statvfs did not return
    within 5 s" for a stale network mount). Bind mounts of the same filesystem appear once.
    """
    if paths is not None:
        mounts = [(p, p, "") for p in paths]
    elif os.path.exists(mounts_path):
        mounts = _mounts(mounts_path, include_pseudo)
    else:  # not Linux: at least the root filesystem
        mounts = [("/", "/", "")]
    stats = _statvfs_all([m for _, m, _ in mounts], timeout_s)
    rows, seen = [], set()
    for device, mount, fstype in sorted(mounts, key=lambda m: len(m[1])):
        st = stats.get(mount, TimeoutError(f"statvfs did not return within {timeout_s:g} s"))
        row: dict[str, Any] = {"filesystem": device, "type": fstype, "mount": mount}
        if isinstance(st, Exception):
            rows.append({**row, "error": str(st)})
            continue
        if st.f_blocks == 0 or (device, st.f_blocks, st.f_bfree) in seen:
            continue  # an empty pseudo filesystem, or a bind mount already listed
        seen.add((device, st.f_blocks, st.f_bfree))
        used, avail = (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_bavail * st.f_frsize
        inodes_used = st.f_files - st.f_ffree
        rows.append(
            {
                **row,
                "size_gib": round(st.f_blocks * st.f_frsize / GIB, 2),
                "used_gib": round(used / GIB, 2),
                "avail_gib": round(avail / GIB, 2),
                "used_pct": round(100 * used / (used + avail), 1) if used + avail else 0.0,
                "inodes_used_pct": round(100 * inodes_used / st.f_files, 1) if st.f_files else None,
                "error": None,
            }
        )
    columns = [
        "filesystem",
        "type",
        "mount",
        "size_gib",
        "used_gib",
        "avail_gib",
        "used_pct",
        "inodes_used_pct",
        "error",
    ]
    return pd.DataFrame(rows, columns=columns)


def check_disk_usage(
    paths: Iterable[str] | None = None,
    *,
    used_warn_pct: float = 80,
    used_crit_pct: float = 90,
    timeout_s: float = 5.0,
) -> list[Finding]:
    """Disk space and inodes per filesystem: WARNING from 80 %, CRITICAL from 90 % (``df -h``).

    A filesystem whose ``statvfs`` hangs (stale network mount) gets its own UNKNOWN finding.
    """
    paths = list(paths) if paths is not None else None
    thresholds = _kwargs(used_warn_pct=used_warn_pct, used_crit_pct=used_crit_pct)
    reproduce = (
        f"check_disk_usage({', '.join(filter(None, [repr(paths) if paths else '', thresholds]))})"
    )
    source = (
        "statvfs() of each mount in /proc/mounts (df -h; df -i)"
        if paths is None
        else (f"statvfs({', '.join(paths)}) (df -h {' '.join(paths)})")
    )
    try:
        frame = fetch_disk_usage(paths, timeout_s=timeout_s)
    except Exception as exc:  # a check never raises
        return [unknown("system.disk_usage", "disks", exc, source=source, reproduce=reproduce)]
    failed, ok = frame[frame["error"].notna()], frame[frame["error"].isna()].copy()
    findings = [
        unknown(
            "system.disk_usage",
            f"disk {r.mount}",
            str(r.error),
            source=source,
            reproduce=reproduce,
            hint="A hung or vanished mount: check the NFS/network storage behind it (mount, dmesg)",
        )
        for r in failed.itertuples()
    ]
    if ok.empty:
        return findings or [
            unknown(
                "system.disk_usage",
                "disks",
                "no filesystem found",
                source=source,
                reproduce=reproduce,
            )
        ]
    ok["worst_pct"] = ok[["used_pct", "inodes_used_pct"]].max(axis=1)
    ok = ok.sort_values("worst_pct", ascending=False)
    over = ok[ok["worst_pct"] >= used_warn_pct]
    status = _judge(float(ok["worst_pct"].iloc[0]), used_warn_pct, used_crit_pct)
    if over.empty:
        top = ok.iloc[0]
        summary = (
            f"All {len(ok)} filesystems below {used_warn_pct:g} %; fullest {top['mount']} "
            f"at {top['used_pct']:g} % ({top['avail_gib']:g} GiB free)"
        )
    else:
        parts = [
            f"{r.mount} {r.used_pct:g} % ({r.avail_gib:g} GiB free"
            + (
                f", inodes {r.inodes_used_pct:g} %"
                if (r.inodes_used_pct or 0) >= used_warn_pct
                else ""
            )
            + ")"
            for r in over.head(4).itertuples()
        ]
        summary = f"{len(over)} filesystem{'s' * (len(over) > 1)} over {used_warn_pct:g} %: " + (
            ", ".join(parts)
        )
    hint = (
        "Find what grew with check_largest(<mount>); clean up logs, caches, old artifacts "
        "(seed: scripts/cleanup-storage.py --dry-run first)"
    )
    findings.append(
        Finding(
            check="system.disk_usage",
            subject="disks",
            status=status,
            summary=summary,
            observed=float(ok["worst_pct"].iloc[0]),
            expected=f"< {used_warn_pct:g} %",
            evidence=(Evidence.table(ok.drop(columns=["worst_pct", "error"]), "filesystems"),),
            source=source,
            reproduce=reproduce,
            hint=hint if status > Status.OK else "",
        )
    )
    return findings


@dataclasses.dataclass(frozen=True)
class DirScan:
    """What a bounded walk of ``root`` found. ``partial`` says the budget ran out first."""

    root: str
    total_bytes: int
    files: pd.DataFrame  # path, size_bytes, size_mib, modified
    dirs: pd.DataFrame  # path, size_bytes, size_mib, depth
    entries: int
    errors: int
    elapsed_s: float
    partial: bool
    reason: str = ""


@dataclasses.dataclass
class _Walk:
    """A depth-first ``os.scandir`` walk with an entry and time budget."""

    root: str
    top_n: int
    max_depth: int
    max_entries: int
    budget_s: float
    files: list[tuple[int, str, float]] = dataclasses.field(default_factory=list)
    dirs: dict[str, int] = dataclasses.field(default_factory=dict)
    entries: int = 0
    errors: int = 0
    total: int = 0
    reason: str = ""

    def run(self) -> None:
        device, deadline = os.stat(self.root).st_dev, time.monotonic() + self.budget_s
        stack = [self.root]
        while stack and not self.reason:
            current = stack.pop()
            try:
                with os.scandir(current) as it:
                    for entry in it:
                        self.entries += 1
                        if self.entries >= self.max_entries:
                            self.reason = f"stopped after {self.entries} entries"
                        elif time.monotonic() > deadline:
                            self.reason = f"time budget of {self.budget_s:g} s ran out"
                        if self.reason:
                            break
                        self._visit(entry, current, device, stack)
            except OSError:
                self.errors += 1

    def _visit(self, entry: os.DirEntry[str], current: str, device: int, stack: list[str]) -> None:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            self.errors += 1
            return
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev == device:  # du -x: stay on this filesystem
                stack.append(entry.path)
            return
        if not stat.S_ISREG(st.st_mode):  # symlinks, sockets, devices: no data of their own
            return
        size = st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
        self.total += size
        rel = os.path.relpath(current, self.root)
        parts = [] if rel == "." else rel.split(os.sep)
        for depth in range(1, min(len(parts), self.max_depth) + 1):
            key = os.path.join(self.root, *parts[:depth])
            self.dirs[key] = self.dirs.get(key, 0) + size
        item = (size, entry.path, st.st_mtime)
        (heapq.heappush if len(self.files) < self.top_n else heapq.heappushpop)(self.files, item)


def fetch_largest(
    path: str | os.PathLike[str],
    *,
    top_n: int = 10,
    max_depth: int = 3,
    max_entries: int = 200_000,
    budget_s: float = 10.0,
) -> DirScan:
    """The largest files and directories under ``path`` (``du -xh --max-depth=3 | sort -h``).

    Sizes are disk usage (allocated blocks, as ``du``), on ``path``'s filesystem only, without
    following symlinks. Directories are totalled down to ``max_depth`` levels below ``path``.
    Stops after ``budget_s`` seconds or ``max_entries`` entries and returns what it has,
    marked ``partial``. Raises ``FileNotFoundError`` / ``NotADirectoryError``.
    """
    root = os.path.abspath(os.fspath(path))
    if not stat.S_ISDIR(os.stat(root).st_mode):
        raise NotADirectoryError(f"not a directory: {root}")
    start = time.monotonic()
    walk = _Walk(root, top_n, max_depth, max_entries, budget_s)
    walk.run()
    files = pd.DataFrame(
        [
            {
                "path": p,
                "size_bytes": s,
                "size_mib": round(s / MIB, 1),
                "modified": pd.Timestamp(m, unit="s", tz="UTC"),
            }
            for s, p, m in sorted(walk.files, reverse=True)
        ],
        columns=["path", "size_bytes", "size_mib", "modified"],
    )
    dirs = pd.DataFrame(
        [
            {
                "path": p,
                "size_bytes": s,
                "size_mib": round(s / MIB, 1),
                "depth": p[len(root) :].count(os.sep),
            }
            for p, s in sorted(walk.dirs.items(), key=lambda kv: -kv[1])[:top_n]
        ],
        columns=["path", "size_bytes", "size_mib", "depth"],
    )
    elapsed = round(time.monotonic() - start, 3)
    partial = bool(walk.reason)
    return DirScan(
        root, walk.total, files, dirs, walk.entries, walk.errors, elapsed, partial, walk.reason
    )


def check_largest(
    path: str | os.PathLike[str],
    *,
    top_n: int = 10,
    max_entries: int = 200_000,
    budget_s: float = 10.0,
) -> list[Finding]:
    """INFO: the largest directories and files under ``path``; says when the scan is partial."""
    root = os.fspath(path)
    extra = _kwargs(
        top_n=top_n if top_n != 10 else None, budget_s=budget_s if budget_s != 10.0 else None
    )
    reproduce = f"check_largest({', '.join(filter(None, [repr(root), extra]))})"
    source = f"os.scandir walk of {root} (du -xh --max-depth=3 {root} | sort -h | tail)"
    try:
        scan = fetch_largest(root, top_n=top_n, max_entries=max_entries, budget_s=budget_s)
    except Exception as exc:  # a check never raises
        return [unknown("system.largest", root, exc, source=source, reproduce=reproduce)]
    biggest = []
    if not scan.dirs.empty:
        biggest.append(f"dir {scan.dirs.iloc[0]['path']} {_human(scan.dirs.iloc[0]['size_bytes'])}")
    if not scan.files.empty:
        biggest.append(
            f"file {scan.files.iloc[0]['path']} {_human(scan.files.iloc[0]['size_bytes'])}"
        )
    what = "; ".join(biggest) or "no files"
    prefix = f"Partial scan ({scan.reason}): " if scan.partial else ""
    summary = (
        f"{prefix}{root} holds {_human(scan.total_bytes)}; largest: {what} "
        f"({scan.entries} entries in {scan.elapsed_s:g} s)"
    )
    evidence = (
        Evidence.table(scan.dirs, f"largest directories under {root}"),
        Evidence.table(scan.files, f"largest files under {root}"),
    )
    hint = "Raise budget_s or scan a subdirectory for a complete picture" if scan.partial else ""
    return [
        Finding(
            check="system.largest",
            subject=root,
            status=Status.INFO,
            summary=summary,
            observed=scan.total_bytes,
            evidence=evidence,
            source=source,
            reproduce=reproduce,
            hint=hint,
            labels={"partial": scan.partial, "errors": scan.errors},
        )
    ]
