"""Host-side parts and faults of the sandbox: the API process, its data directory, its backups.

At start (:func:`prepare`) the sandbox gets what a small production host has next to the API:

- a **data directory** (``state/data``: uploads and renders, a few MiB) whose volume is sized
  :data:`DATA_QUOTA_GIB` GiB -- the runbooks' ``data_quota_gib``;
- **nightly backups** (``backups/postgres/aura-YYYYmmdd-HHMM.dump``): real ``pg_dump -Fc``
  archives of the sandbox database, the newest 3 h old, the one before 27 h old.

Faults (``apply``/``revert`` of catalogue faults, each taking the running ``Sandbox``):

- **api-hung** -- ``SIGSTOP`` to the API process: the kernel still accepts connections on
  its port, nothing answers; revert is ``SIGCONT``.
- **disk-full** -- a render cache left behind by crashed jobs fills the data directory to
  94 % of its volume (``posix_fallocate``: real allocated blocks, written instantly).
- **backup-stale** -- the backup job stopped three nights ago: the newest archive is 74 h old.
- **backup-corrupt** -- tonight's archive was cut short (the job was killed while writing):
  40 % of a real archive, unreadable by ``pg_restore``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

__all__ = [
    "DATA_QUOTA_GIB",
    "backup_dir",
    "data_dir",
    "fault_api_continue",
    "fault_api_stop",
    "fault_clear_data_dir",
    "fault_corrupt_backup",
    "fault_fill_data_dir",
    "fault_fresh_backups",
    "fault_stale_backups",
    "prepare",
    "process_pattern",
    "release",
]

#: The size of the sandbox data directory's volume (runbook parameter ``data_quota_gib``).
DATA_QUOTA_GIB = 0.25
MIB = 1024**2
FILL_PCT = 94.0


def data_dir(sb: Any) -> Path:
    """The API's data directory (uploads, renders, caches)."""
    return Path(sb.workdir) / "state" / "data"


def backup_dir(sb: Any) -> Path:
    """Where the nightly database backups go."""
    return Path(sb.workdir) / "backups" / "postgres"


def process_pattern(sb: Any) -> str:
    """A regex matching exactly this sandbox's API process (``ps aux | grep -E``)."""
    return f"aura_ops.sandbox.service --port {sb.port}"


def _write(path: Path, size: int, *, fast: bool = False) -> None:
    """A file of ``size`` allocated bytes (``posix_fallocate`` when ``fast``, else zeros)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        if fast and hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fd, 0, size)
                return
            except OSError:  # a filesystem without fallocate: write it out
                pass
        chunk = b"\0" * MIB
        for offset in range(0, size, MIB):
            os.write(fd, chunk[: min(MIB, size - offset)])
    finally:
        os.close(fd)


def _seed_data_dir(sb: Any) -> None:
    root = data_dir(sb)
    for i in range(3):
        _write(root / "renders" / f"project-{i + 1:04d}" / "final-1080p.mp4", 2 * MIB)
    for i in range(4):
        _write(root / "uploads" / f"upload-{i + 1:04d}.mov", MIB // 2)


def _dump(sb: Any, path: Path, *, at: dt.datetime, keep_fraction: float = 1.0) -> None:
    """A real ``pg_dump -Fc`` of the sandbox database at ``path``, dated ``at``."""
    from aura_ops.backup import find_pg_tool  # not at import: the service process skips pandas

    tool = find_pg_tool("pg_dump")
    if tool is None:
        raise RuntimeError("no pg_dump found (pgserver ships one; or apt-get install postgresql)")
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(  # noqa: S603 - a PostgreSQL tool, our arguments
        [tool, "--format=custom", f"--file={path}", sb.dsn],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {proc.stderr.strip()}")
    if keep_fraction < 1.0:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep_fraction)])
    stamp = at.timestamp()
    os.utime(path, (stamp, stamp))


def _backups(sb: Any, ages_h: list[float], *, corrupt_newest: bool = False) -> None:
    """Replace the backup directory's archives with ones ``ages_h`` hours old."""
    root = backup_dir(sb)
    shutil.rmtree(root, ignore_errors=True)
    now = dt.datetime.now(dt.UTC)
    newest = min(ages_h)
    for age in ages_h:
        at = now - dt.timedelta(hours=age)
        keep = 0.4 if corrupt_newest and age == newest else 1.0
        _dump(sb, root / f"aura-{at:%Y%m%d-%H%M}.dump", at=at, keep_fraction=keep)


def prepare(sb: Any) -> None:
    """Give a freshly started sandbox its data directory and its last two nightly backups."""
    _seed_data_dir(sb)
    _backups(sb, [27.0, 3.0])


def release(sb: Any) -> None:
    """Undo what must not outlive a stop: a stopped API process is continued."""
    with contextlib.suppress(Exception):
        fault_api_continue(sb)


# --- api-hung -------------------------------------------------------------------------------


def fault_api_stop(sb: Any) -> None:
    """SIGSTOP the API process: its port still accepts connections, nothing answers."""
    if sb.proc is None or sb.proc.poll() is not None:
        raise RuntimeError("the sandbox API process is not running")
    os.kill(sb.proc.pid, signal.SIGSTOP)


def fault_api_continue(sb: Any) -> None:
    """SIGCONT the API process."""
    if sb.proc is not None and sb.proc.poll() is None:
        os.kill(sb.proc.pid, signal.SIGCONT)


# --- disk-full ------------------------------------------------------------------------------


def _allocated(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def fault_fill_data_dir(sb: Any) -> None:
    """Temporary render files of crashed jobs fill the data directory to 94 % of its volume."""
    root = data_dir(sb)
    wanted = int(DATA_QUOTA_GIB * 1024 * MIB * FILL_PCT / 100) - _allocated(root)
    sizes = [wanted * share // 100 for share in (40, 25, 15, 10, 6)]
    sizes.append(wanted - sum(sizes))
    for i, size in enumerate(sizes):
        _write(root / "render-cache" / f"job-{9000 + i}" / "frames.tmp", size, fast=True)


def fault_clear_data_dir(sb: Any) -> None:
    """The render cache is cleaned up."""
    shutil.rmtree(data_dir(sb) / "render-cache", ignore_errors=True)


# --- backups --------------------------------------------------------------------------------


def fault_stale_backups(sb: Any) -> None:
    """The backup job stopped three nights ago: the newest archive is 74 h old."""
    _backups(sb, [98.0, 74.0])


def fault_corrupt_backup(sb: Any) -> None:
    """Tonight's archive was cut short at 40 % when the job was killed while writing it."""
    _backups(sb, [25.0, 1.0], corrupt_newest=True)


def fault_fresh_backups(sb: Any) -> None:
    """The backup job works again: last night's and the night before's archives."""
    _backups(sb, [27.0, 3.0])
