"""SQLite diagnostics (seed 001 "Check database size"): size and ``PRAGMA integrity_check``.

The file is opened read-only (``file:…?mode=ro`` URI) with a busy timeout, and a progress
handler interrupts any statement that runs past ``timeout_s``: a locked or huge database gives
UNKNOWN, never a hang. A file too damaged to be read as a database is itself the answer of the
integrity check (CRITICAL), while a missing file is UNKNOWN. Re-exported by
:mod:`aura_ops.database`.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from aura_ops.errors import AuraOpsError, QueryError, SourceTimeoutError, SourceUnavailableError
from aura_ops.findings import Evidence, Finding, Status, unknown

__all__ = [
    "check_sqlite_integrity",
    "check_sqlite_size",
    "fetch_sqlite_integrity",
    "fetch_sqlite_size",
]

#: Seed 001's size query, plus the free-page count.
SQLITE_SIZE_SQL = (
    "SELECT page_count * page_size AS size, page_count, page_size, freelist_count "
    "FROM pragma_page_count(), pragma_page_size(), pragma_freelist_count()"
)
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
Path_ = str | os.PathLike[str]


def _rows(path: Path_, query: str, timeout_s: float) -> list[Any]:
    """Rows of ``query`` on a read-only connection; corruption errors pass through as is."""
    p = Path(path)
    if not p.is_file():
        raise SourceUnavailableError(f"SQLite database {p} does not exist", source=query)
    deadline = time.monotonic() + timeout_s
    uri = f"file:{quote(str(p.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise SourceUnavailableError(f"cannot open {p}: {exc}", source=query) from None
    try:
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        return conn.execute(query).fetchall()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") in _CORRUPT:
            raise
        if "interrupted" in str(exc) or "locked" in str(exc):
            raise SourceTimeoutError(
                f"{p}: {exc} (timeout_s = {timeout_s:g})",
                hint="a writer holds the database, or it is very large: raise timeout_s",
                source=query,
            ) from None
        raise SourceUnavailableError(f"{p}: {exc}", source=query) from None
    finally:
        conn.close()


def fetch_sqlite_size(path: Path_, *, timeout_s: float = 5.0) -> pd.DataFrame:
    """One row: ``size`` = page_count × page_size (seed 001), pages, free pages, file bytes."""
    try:
        rows = _rows(path, SQLITE_SIZE_SQL, timeout_s)
    except sqlite3.DatabaseError as exc:
        raise QueryError(
            f"{path} is not a readable SQLite database: {exc}",
            hint="run check_sqlite_integrity",
            source=SQLITE_SIZE_SQL,
        ) from None
    df = pd.DataFrame(rows, columns=["size", "page_count", "page_size", "freelist_count"])
    wal = Path(f"{path}-wal")
    df["file_bytes"] = Path(path).stat().st_size
    df["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
    df.attrs["source"] = SQLITE_SIZE_SQL
    return df


def fetch_sqlite_integrity(
    path: Path_, *, quick: bool = False, max_errors: int = 100, timeout_s: float = 30.0
) -> pd.DataFrame:
    """``PRAGMA integrity_check`` (or ``quick_check``) messages: ``["ok"]`` when healthy.

    A file too damaged to open as a database gives its error as the one message.
    """
    pragma = f"PRAGMA {'quick_check' if quick else 'integrity_check'}({int(max_errors)})"
    try:
        lines = [ln for r in _rows(path, pragma, timeout_s) for ln in str(r[0]).splitlines()]
        messages = [ln for ln in lines if not ln.startswith("*** in database")]
    except sqlite3.DatabaseError as exc:  # corrupt / not a database: that is the answer
        messages = [f"{getattr(exc, 'sqlite_errorname', 'SQLITE_ERROR')}: {exc}"]
    df = pd.DataFrame({"message": messages})
    df.attrs["source"] = pragma
    return df


def _guarded(
    check: str, path: Path_, source: str, reproduce: str, body: Callable[..., list[Finding]]
) -> list[Finding]:
    """Run ``body(make)``; any failure becomes one UNKNOWN finding."""
    make = functools.partial(Finding, check, str(path), source=source, reproduce=reproduce)
    try:
        return body(make)
    except AuraOpsError as exc:
        return [
            unknown(check, str(path), exc.message, source=exc.source or source, hint=exc.hint,
                    reproduce=reproduce)
        ]  # fmt: skip
    except Exception as exc:  # a check never raises
        return [unknown(check, str(path), exc, source=source, reproduce=reproduce)]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_sqlite_size(
    path: Path_, *, size_warn_bytes: float | None = None, timeout_s: float = 5.0
) -> list[Finding]:
    """SQLite database size (seed 001); OK with the numbers, WARNING above ``size_warn_bytes``."""
    reproduce = f"check_sqlite_size({str(path)!r}, size_warn_bytes={size_warn_bytes!r})"

    def body(make: Callable[..., Finding]) -> list[Finding]:
        row = fetch_sqlite_size(path, timeout_s=timeout_s).iloc[0]
        size = int(row["size"])
        over = size_warn_bytes is not None and size > size_warn_bytes
        summary = (
            f"{Path(path).name} is {_size(size)} ({int(row['page_count'])} pages of "
            f"{int(row['page_size'])} B, {int(row['freelist_count'])} free; "
            f"WAL {_size(row['wal_bytes'])})"
        )
        return [
            make(
                Status.WARNING if over else Status.OK,
                summary,
                observed=size,
                expected=None if size_warn_bytes is None else f"<= {size_warn_bytes:g} B",
                evidence=(Evidence.table(row.to_frame().T, "size"),),
                hint="Free disk or archive old rows; VACUUM reclaims free pages" if over else "",
            )
        ]

    return _guarded("database.sqlite_size", path, SQLITE_SIZE_SQL, reproduce, body)


def check_sqlite_integrity(
    path: Path_, *, quick: bool = False, timeout_s: float = 30.0
) -> list[Finding]:
    """``PRAGMA integrity_check`` read-only: ``ok`` is OK, anything else (or no DB) CRITICAL."""
    reproduce = f"check_sqlite_integrity({str(path)!r}, quick={quick!r}, timeout_s={timeout_s!r})"

    def body(make: Callable[..., Finding]) -> list[Finding]:
        df = fetch_sqlite_integrity(path, quick=quick, timeout_s=timeout_s)
        messages = list(df["message"])
        if messages == ["ok"]:
            ok = f"{Path(path).name}: integrity ok"
            return [make(Status.OK, ok, observed="ok", expected="ok", source=df.attrs["source"])]
        return [
            make(
                Status.CRITICAL,
                f"{Path(path).name} is corrupt: {len(messages)} problem(s), first: "
                f"{' '.join(messages[0].split())[:120]}",
                observed=len(messages),
                expected="ok",
                evidence=(Evidence.text(messages, "integrity_check"),),
                source=df.attrs["source"],
                hint="Stop writers, copy the file aside, then restore from backup or salvage "
                "with: sqlite3 damaged.db .recover | sqlite3 recovered.db",
            )
        ]

    return _guarded("database.sqlite_integrity", path, "PRAGMA integrity_check", reproduce, body)
