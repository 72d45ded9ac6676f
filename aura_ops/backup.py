"""Database backups: is there a recent one, and can it be restored? (seed 004 Backup Failure)

The seed's quick checks are ``ls -lah backups/postgres/ | tail``, ``df -h`` and "verify backup
integrity"; here they are:

- :func:`check_backup_freshness` -- the newest backup file in a directory, by modification
  time: WARNING when older than ``max_age_h`` (a daily job gets a couple of hours' slack),
  CRITICAL past ``crit_age_h`` (the seed escalates after two failed nights), and a WARNING
  when the newest file is much smaller than the one before it (a job that died half way).
- :func:`check_backup_readable` -- reads the newest backup back. A ``pg_dump -Fc`` archive
  goes through ``pg_restore --list`` (its table of contents) and then ``pg_restore
  --file=/dev/null`` (every data block: an archive cut short still has a readable table of
  contents). A plain ``.sql``/``.sql.gz`` dump must end with pg_dump's "dump complete"
  trailer. Encrypted files (``.gpg``) cannot be read without the key: UNKNOWN, said so.

``pg_restore`` is found by :func:`find_pg_tool`: the newest of ``PATH``,
``/usr/lib/postgresql/*/bin`` and the binaries shipped with ``pgserver`` (an older
``pg_restore`` cannot read a newer archive; that is UNKNOWN, never "unreadable").
Listing a directory runs in a daemon thread with a deadline (a hung network mount blocks
forever); every subprocess has a timeout and is killed with its process group.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import functools
import glob
import gzip
import os
import re
import shutil
import signal
import subprocess
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from aura_ops.errors import AuraOpsError, SourceTimeoutError, SourceUnavailableError
from aura_ops.findings import Evidence, Finding, Status, unknown

__all__ = [
    "check_backup_freshness",
    "check_backup_readable",
    "fetch_backups",
    "find_pg_tool",
    "verify_backup",
]

T = TypeVar("T")
DUMP_TRAILER = b"PostgreSQL database dump complete"
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def _deadline(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run ``fn`` in a daemon thread; raise :class:`SourceTimeoutError` past ``timeout_s``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="aura-ops-deadline")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise SourceTimeoutError(
            f"{what} did not return within {timeout_s:g} s",
            hint="a hung network mount (NFS, SMB) blocks file access: check mount and dmesg",
        )
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _age(hours: float) -> str:
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _list_backups(directory: Path, patterns: list[str]) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    rows = []
    with os.scandir(directory) as it:
        for entry in it:
            if not any(fnmatch.fnmatch(entry.name, p) for p in patterns):
                continue
            st = entry.stat(follow_symlinks=True)
            if not entry.is_file(follow_symlinks=True):
                continue
            modified = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)
            rows.append(
                {
                    "name": entry.name,
                    "size_bytes": st.st_size,
                    "modified": modified,
                    "age_h": round((now - modified).total_seconds() / 3600, 2),
                    "path": entry.path,
                }
            )
    return rows


def fetch_backups(
    backup_dir: str | os.PathLike[str], *, pattern: str = "*", timeout_s: float = 10.0
) -> pd.DataFrame:
    """Backup files in ``backup_dir`` (``ls -lat``), newest first.

    ``pattern`` is a glob, or several separated by commas (``"*.dump,*.sql.gz"``). Columns:
    name, size_bytes, modified (UTC), age_h, path. Raises :class:`SourceUnavailableError`
    (missing or unreadable directory) or :class:`SourceTimeoutError` (the listing hung).
    """
    directory = Path(backup_dir)
    patterns = [p.strip() for p in pattern.split(",") if p.strip()] or ["*"]
    try:
        rows = _deadline(
            lambda: _list_backups(directory, patterns), timeout_s, f"listing {directory}"
        )
    except FileNotFoundError:
        raise SourceUnavailableError(
            f"backup directory {directory} does not exist",
            hint="is the backup volume mounted, and is backup_dir right?",
        ) from None
    except OSError as exc:
        raise SourceUnavailableError(
            f"cannot read backup directory {directory}: {exc.strerror or exc}",
            hint="run as a user that may read the backups (or fix the mount)",
        ) from None
    columns = ["name", "size_bytes", "modified", "age_h", "path"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("modified", ascending=False, kind="stable").reset_index(drop=True)


def check_backup_freshness(
    backup_dir: str | os.PathLike[str],
    *,
    pattern: str = "*",
    max_age_h: float = 26.0,
    crit_age_h: float = 48.0,
    shrink_ratio: float = 0.5,
    timeout_s: float = 10.0,
) -> list[Finding]:
    """Is the newest backup recent, and about as big as the one before it?

    WARNING when the newest file matching ``pattern`` is older than ``max_age_h`` hours,
    CRITICAL past ``crit_age_h`` or when there is none at all; WARNING when it is smaller than
    ``shrink_ratio`` times the previous one (a job that stopped half way).
    """
    where = str(backup_dir)
    reproduce = (
        f"check_backup_freshness({where!r}, pattern={pattern!r}, max_age_h={max_age_h:g}, "
        f"crit_age_h={crit_age_h:g})"
    )
    source = f"os.scandir({where}) for {pattern} (ls -lat {where} | head)"
    check = "backup.freshness"
    try:
        frame = fetch_backups(backup_dir, pattern=pattern, timeout_s=timeout_s)
    except AuraOpsError as exc:
        return [unknown(check, where, exc.message, source=source, hint=exc.hint,
                        reproduce=reproduce)]  # fmt: skip
    make = dict(check=check, subject=where, source=source, reproduce=reproduce)
    if frame.empty:
        return [
            Finding(status=Status.CRITICAL, summary=f"No backup matching {pattern!r} in {where}",
                    observed=0, expected=f"one newer than {max_age_h:g} h",
                    hint="Run a backup now (see Resolution) and check the backup job's schedule "
                    "and log", **make)
        ]  # fmt: skip
    table = frame.drop(columns=["path"]).head(10)
    evidence = (Evidence.table(table, f"newest backups in {where}"),)
    findings = [_freshness(frame, max_age_h, crit_age_h, evidence, make)]
    findings += _shrunk(frame, shrink_ratio, evidence, make)
    return findings


def _freshness(
    frame: pd.DataFrame, max_age_h: float, crit_age_h: float,
    evidence: tuple[Evidence, ...], make: dict[str, Any],
) -> Finding:  # fmt: skip
    """The finding on the newest backup's age."""
    newest = frame.iloc[0]
    age_h = float(newest["age_h"])
    status = (
        Status.CRITICAL
        if age_h > crit_age_h
        else (Status.WARNING if age_h > max_age_h else Status.OK)
    )
    when = f"{newest['modified']:%Y-%m-%d %H:%M} UTC"
    if status == Status.OK:
        summary = (
            f"Newest backup is {_age(age_h)} old: {newest['name']} "
            f"({_human(newest['size_bytes'])}, {when})"
        )
    else:
        summary = (
            f"Backups are stale: newest {newest['name']} is {_age(age_h)} old (limit "
            f"{max_age_h:g} h); {len(frame)} backup file(s) in {make['subject']}"
        )
    hint = (
        "The backup job has not produced a file since then: read its log and cron/timer "
        "status; run a manual backup (see Resolution)"
    )
    return Finding(status=status, summary=summary, observed=round(age_h, 2),
                   expected=f"<= {max_age_h:g} h", evidence=evidence,
                   hint="" if status == Status.OK else hint,
                   labels={"newest": str(newest["name"]), "age_h": age_h}, **make)  # fmt: skip


def _shrunk(
    frame: pd.DataFrame, ratio: float, evidence: tuple[Evidence, ...], make: dict[str, Any]
) -> list[Finding]:
    """A WARNING when the newest backup is much smaller than the previous one."""
    if len(frame) < 2 or ratio <= 0:
        return []
    new, old = frame.iloc[0], frame.iloc[1]
    if old["size_bytes"] <= 0 or new["size_bytes"] >= ratio * old["size_bytes"]:
        return []
    summary = (
        f"Newest backup {new['name']} is {_human(new['size_bytes'])}, "
        f"{new['size_bytes'] / old['size_bytes']:.0%} of the previous {old['name']} "
        f"({_human(old['size_bytes'])}): it may be incomplete"
    )
    return [
        Finding(status=Status.WARNING, summary=summary, observed=int(new["size_bytes"]),
                expected=f">= {ratio:.0%} of the previous backup", evidence=evidence,
                hint="Verify it with check_backup_readable before relying on it",
                **{**make, "check": "backup.size"})
    ]  # fmt: skip


# --- reading backups back ---------------------------------------------------------------------


def _tool_dirs() -> list[Path]:
    dirs = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_restore")]
    spec = None
    with contextlib.suppress(ImportError, ValueError):
        import importlib.util

        spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "pginstall" / "bin")
    return dirs


@functools.lru_cache(maxsize=32)
def _tool_version(path: str) -> tuple[int, int]:
    try:
        out = subprocess.run(  # noqa: S603 - a PostgreSQL tool we found ourselves
            [path, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (-1, -1)
    m = _VERSION.search(out)
    return (int(m[1]), int(m[2] or 0)) if m else (-1, -1)


def find_pg_tool(name: str = "pg_restore") -> str | None:
    """The newest ``name`` (``pg_restore``, ``pg_dump``) on this host, or None.

    Looks on ``PATH``, in ``/usr/lib/postgresql/*/bin`` and in pgserver's ``pginstall/bin``;
    newest wins, because an older tool cannot read or dump a newer server's format.
    """
    candidates = {str(d / name) for d in _tool_dirs() if (d / name).is_file()}
    on_path = shutil.which(name)
    if on_path:
        candidates.add(on_path)
    versions = {c: _tool_version(c) for c in sorted(candidates)}
    usable = {c: v for c, v in versions.items() if v >= (0, 0)}
    return max(usable, key=lambda c: usable[c]) if usable else None


def _run(argv: list[str], timeout_s: float) -> tuple[int, str]:
    """Run ``argv``; ``(returncode, stderr+stdout tail)``; kill its process group on timeout."""
    proc = subprocess.Popen(  # noqa: S603 - fixed tool, our arguments
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=2)
        raise SourceTimeoutError(
            f"{Path(argv[0]).name} did not finish within {timeout_s:g} s",
            hint="a very large backup or a hung mount: raise timeout_s, or verify on the "
            "backup host",
        ) from None
    text = (err or b"").decode(errors="replace").strip() or (out or b"")[-2000:].decode(
        errors="replace"
    )
    return proc.returncode, text


def _head(path: Path, n: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def _verify_custom(path: Path, timeout_s: float, pg_restore: str | None) -> tuple[bool, str]:
    tool = pg_restore or find_pg_tool("pg_restore")
    if tool is None:
        raise SourceUnavailableError(
            "pg_restore not found",
            hint="apt-get install postgresql-client (or pip install pgserver), or pass "
            "pg_restore='/path/to/pg_restore'",
        )
    for args in (["--list"], ["--file=/dev/null"]):
        code, text = _run([tool, *args, str(path)], timeout_s)
        if code != 0 and "unsupported version" in text:
            raise SourceUnavailableError(
                f"{tool} is too old for this archive: {text.splitlines()[0]}",
                hint="use the pg_restore of the PostgreSQL version that wrote it (or newer)",
            )
        if code != 0:
            return False, f"pg_restore {args[0]} failed: {text.splitlines()[0] if text else code}"
    return True, "pg_restore read its table of contents and every data block"


def _verify_plain(path: Path, compressed: bool) -> tuple[bool, str]:
    size = 8192
    try:
        if compressed:
            with gzip.open(path, "rb") as fh:  # reads (and CRC-checks) the whole stream
                tail = b""
                while chunk := fh.read(1 << 20):
                    tail = (tail + chunk)[-size:]
        else:
            with path.open("rb") as fh:
                fh.seek(max(0, path.stat().st_size - size))
                tail = fh.read()
    except (EOFError, OSError, zlib.error) as exc:
        return False, f"gzip stream broken: {exc}"
    if DUMP_TRAILER in tail:
        return True, "the dump ends with pg_dump's 'dump complete' trailer"
    return False, "no 'PostgreSQL database dump complete' trailer at the end: the dump stopped"


def verify_backup(
    path: str | os.PathLike[str], *, timeout_s: float = 60.0, pg_restore: str | None = None
) -> tuple[bool, str]:
    """Read one backup back: ``(readable, how it was judged or why it failed)``.

    Raises :class:`SourceUnavailableError`/:class:`SourceTimeoutError` when it could not be
    judged (no ``pg_restore``, a tool too old, encrypted, the read timed out).
    """
    file = Path(path)
    head = _deadline(lambda: _head(file, 5), min(timeout_s, 10.0), f"reading {file}")
    if head.startswith(b"PGDMP"):
        return _verify_custom(file, timeout_s, pg_restore)
    if file.name.endswith((".gpg", ".age", ".enc")):
        raise SourceUnavailableError(
            f"{file.name} is encrypted: its content cannot be verified here",
            hint="decrypt a copy on the backup host and verify it there",
        )
    if head.startswith(b"\x1f\x8b"):
        return _deadline(lambda: _verify_plain(file, True), timeout_s, f"reading {file}")
    if not head:
        return False, "the file is empty"
    return _deadline(lambda: _verify_plain(file, False), timeout_s, f"reading {file}")


def check_backup_readable(
    backup: str | os.PathLike[str],
    *,
    pattern: str = "*",
    timeout_s: float = 60.0,
    pg_restore: str | None = None,
) -> list[Finding]:
    """Can the newest backup in ``backup`` (a directory, or one file) be read back in full?

    CRITICAL when it cannot (names the file and pg_restore's error), OK when it can;
    UNKNOWN when it could not be judged (no backup, no pg_restore, encrypted, timed out).
    """
    where = str(backup)
    reproduce = f"check_backup_readable({where!r}, pattern={pattern!r}, timeout_s={timeout_s:g})"
    source = f"pg_restore --list / --file=/dev/null on the newest {pattern} in {where}"
    check = "backup.readable"
    try:
        target = Path(backup)
        if _deadline(target.is_dir, 10.0, f"stat {target}"):
            frame = fetch_backups(backup, pattern=pattern, timeout_s=10.0)
            if frame.empty:
                raise SourceUnavailableError(f"no backup matching {pattern!r} in {where}")
            target = Path(frame.iloc[0]["path"])
        elif not target.exists():
            raise SourceUnavailableError(
                f"backup {where} does not exist",
                hint="is the backup volume mounted, and is backup_dir right?",
            )
        ok, how = verify_backup(target, timeout_s=timeout_s, pg_restore=pg_restore)
    except AuraOpsError as exc:
        return [unknown(check, where, exc.message, source=source, hint=exc.hint,
                        reproduce=reproduce)]  # fmt: skip
    except OSError as exc:
        return [unknown(check, where, exc, source=source, reproduce=reproduce)]
    size = _human(target.stat().st_size)
    evidence = (Evidence.text(how, f"verification of {target.name}"),)
    if ok:
        summary = f"Newest backup {target.name} ({size}) is readable: {how}"
        return [Finding(check, str(target), Status.OK, summary, observed="readable",
                        evidence=evidence, source=source, reproduce=reproduce)]  # fmt: skip
    summary = f"Newest backup {target.name} ({size}) is unreadable: {how}"
    hint = (
        "Do not rely on it: take a new backup now (see Resolution), then find why the job "
        "wrote a broken file (disk full, killed, timeout in its log)"
    )
    return [Finding(check, str(target), Status.CRITICAL, summary, observed="unreadable",
                    expected="readable by pg_restore", evidence=evidence, source=source,
                    reproduce=reproduce, hint=hint)]  # fmt: skip
