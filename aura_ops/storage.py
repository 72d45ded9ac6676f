"""Data directories against the space allotted to them, naming what fills them (seed 003).

``df -h`` (:func:`aura_ops.system.check_disk_usage`) judges whole filesystems. A data
directory often has a budget of its own -- a volume or PVC sized for it, a quota, a bucket
limit -- and fills up long before the host disk does. :func:`check_directory_usage` totals a
directory the way ``du -x`` does (allocated blocks, one filesystem, bounded walk from
:func:`aura_ops.system.fetch_largest`), judges it against ``quota_gib`` with the seeds' disk
thresholds (WARNING from 80 %, CRITICAL from 90 %), and names the largest subdirectories and
files in the summary: the offenders are the first thing the on-call engineer needs.

A walk that runs out of time says so: a partial total above the threshold is still a finding
(the real figure is larger), a partial total below it is UNKNOWN, never OK. The walk runs in
a daemon thread with a deadline, so a hung network mount cannot hang the runbook.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pandas as pd

from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.system import DirScan, fetch_largest

__all__ = ["check_directory_usage", "offenders"]

GIB = 1024**3


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _scan(path: str, *, top_n: int, budget_s: float) -> DirScan:
    """:func:`fetch_largest` with a hard deadline of ``2 * budget_s + 1`` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["scan"] = fetch_largest(path, top_n=top_n, max_depth=2, budget_s=budget_s)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="aura-ops-du")
    thread.start()
    limit = 2 * budget_s + 1
    thread.join(limit)
    if thread.is_alive():
        raise TimeoutError(f"walking {path} did not return within {limit:g} s")
    if "error" in box:
        raise box["error"]
    return box["scan"]  # type: ignore[no-any-return]


def offenders(scan: DirScan, *, top_n: int = 3) -> pd.DataFrame:
    """The largest entries directly under the scanned directory, then the largest files.

    Columns: kind (``dir``/``file``), path (relative to the scanned root), size_bytes, share
    (of the scanned total).
    """
    root, total = scan.root, max(scan.total_bytes, 1)
    dirs = scan.dirs[scan.dirs["depth"] == 1].head(top_n)
    rows = [
        {"kind": "dir", "path": os.path.relpath(p, root), "size_bytes": int(s)}
        for p, s in zip(dirs["path"], dirs["size_bytes"], strict=True)
    ]
    rows += [
        {"kind": "file", "path": os.path.relpath(p, root), "size_bytes": int(s)}
        for p, s in zip(scan.files["path"].head(top_n), scan.files["size_bytes"].head(top_n),
                        strict=True)
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["kind", "path", "size_bytes"])
    frame["share"] = (frame["size_bytes"] / total).round(3)
    return frame


def _named(frame: pd.DataFrame) -> str:
    dirs = frame[frame["kind"] == "dir"].head(3)
    files = frame[frame["kind"] == "file"].head(1)
    parts = [f"{p}/ {_human(s)}" for p, s in zip(dirs["path"], dirs["size_bytes"], strict=True)]
    parts += [f"file {p} {_human(s)}" for p, s in zip(files["path"], files["size_bytes"],
                                                      strict=True)]  # fmt: skip
    return ", ".join(parts) or "no files"


def _judged(
    scan: DirScan, used: int, named: str, quota_gib: float, pcts: tuple[float, float],
    make: dict[str, Any],
) -> Finding:  # fmt: skip
    """The finding on ``used`` bytes against the allotment (UNKNOWN for a partial OK)."""
    warn_pct, crit_pct = pcts
    quota = quota_gib * GIB
    pct = 100.0 * used / quota
    status = (
        Status.CRITICAL if pct >= crit_pct else Status.WARNING if pct >= warn_pct else Status.OK
    )
    root = make["subject"]
    if scan.partial and status == Status.OK:
        reason = f"partial scan ({scan.reason}): {_human(used)} counted so far, under the limit"
        hint = "raise budget_s, or scan a subdirectory"
        return unknown(make["check"], root, reason, source=make["source"],
                       reproduce=make["reproduce"], hint=hint)  # fmt: skip
    lower = "at least " if scan.partial else ""
    summary = (
        f"{root} uses {lower}{_human(used)} of its {_human(quota)} ({lower}{pct:.0f} %)"
        + (f", over {warn_pct:g} %" if status > Status.OK else "")
        + f"; largest: {named}"
    )
    hint = (
        "Clean up the largest offenders named here (old temporary files, caches, renders): "
        "dry-run first (see Resolution); then grow the volume or add retention"
    )
    return Finding(status=status, summary=summary, observed=round(pct, 1),
                   expected=f"< {warn_pct:g} % of {_human(quota)}",
                   hint=hint if status > Status.OK else "", **make)  # fmt: skip


def check_directory_usage(
    path: str | os.PathLike[str],
    *,
    quota_gib: float,
    warn_pct: float = 80.0,
    crit_pct: float = 90.0,
    top_n: int = 10,
    budget_s: float = 10.0,
) -> list[Finding]:
    """Space used under ``path`` against the ``quota_gib`` allotted to it, naming offenders.

    WARNING from ``warn_pct`` % of ``quota_gib``, CRITICAL from ``crit_pct`` % (seed 003:
    "Disk usage < 80%"). ``quota_gib <= 0`` means no allotment is known: the sizes are
    reported as INFO. Missing or unreadable directories are UNKNOWN.
    """
    root = os.fspath(path)
    reproduce = (
        f"check_directory_usage({root!r}, quota_gib={quota_gib:g}, warn_pct={warn_pct:g}, "
        f"crit_pct={crit_pct:g})"
    )
    source = f"os.scandir walk of {root} (du -xsh {root}; du -xh --max-depth=2 {root} | sort -h)"
    check = "storage.directory_usage"
    try:
        scan = _scan(root, top_n=top_n, budget_s=budget_s)
    except (OSError, TimeoutError) as exc:
        return [unknown(check, root, exc, source=source, reproduce=reproduce)]
    if scan.errors and scan.entries <= scan.errors:
        reason = f"{scan.errors} entries could not be read (permission denied?)"
        return [unknown(check, root, reason, source=source, reproduce=reproduce)]
    top = offenders(scan, top_n=top_n)
    evidence = (
        Evidence.table(top.assign(size=[_human(s) for s in top["size_bytes"]]),
                       f"largest under {root}"),
        Evidence.table(scan.dirs, f"directories under {root} (2 levels)"),
    )  # fmt: skip
    used, named = scan.total_bytes, _named(top)
    make = dict(check=check, subject=root, source=source, reproduce=reproduce, evidence=evidence,
                labels={"partial": scan.partial, "bytes": used})  # fmt: skip
    if quota_gib <= 0:
        summary = f"{root} holds {_human(used)} (no quota given); largest: {named}"
        return [Finding(status=Status.INFO, summary=summary, observed=used, **make)]
    return [_judged(scan, used, named, quota_gib, (warn_pct, crit_pct), make)]
