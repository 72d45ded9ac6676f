"""Backups: freshness from real files, readability from real pg_dump archives and pg_restore."""

from __future__ import annotations

import contextlib
import gzip
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aura_ops import backup
from aura_ops.findings import Status
from aura_ops.sandbox.postgres import start_postgres
from aura_ops.sandbox.store import init_schema

IN_CI = os.environ.get("CI") == "true"
HOUR = 3600.0


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def _file(path: Path, *, age_h: float, size: int = 1000, data: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else b"x" * size)
    stamp = time.time() - age_h * HOUR
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bytes]:
    """The bytes of a real ``pg_dump -Fc`` archive of a seeded PostgreSQL database."""
    tool = backup.find_pg_tool("pg_dump")
    _need(tool is not None, "no pg_dump (pgserver ships one)")
    root = tmp_path_factory.mktemp("pg")
    with start_postgres(root / "data") as pg:
        init_schema(pg.dsn)
        out = root / "full.dump"
        subprocess.run([str(tool), "-Fc", "-f", str(out), pg.dsn], check=True, timeout=60)
        yield out.read_bytes()


def test_fresh_backup_is_ok(tmp_path: Path) -> None:
    """A backup written 3 h ago is OK and named, with the directory listing as evidence."""
    _file(tmp_path / "aura-old.dump", age_h=27)
    _file(tmp_path / "aura-new.dump", age_h=3)
    (finding,) = backup.check_backup_freshness(tmp_path, pattern="*.dump")
    assert Status.OK == finding.status
    assert "aura-new.dump" in finding.summary and "3.0 h old" in finding.summary
    assert finding.evidence[0].data["total_rows"] == 2


def test_stale_backup_is_warning_then_critical(tmp_path: Path) -> None:
    """Older than max_age_h is WARNING ("stale"); past crit_age_h CRITICAL."""
    _file(tmp_path / "a.dump", age_h=30)
    (warn,) = backup.check_backup_freshness(tmp_path, max_age_h=26, crit_age_h=48)
    assert Status.WARNING == warn.status and "stale" in warn.summary
    os.utime(tmp_path / "a.dump", (time.time() - 74 * HOUR,) * 2)
    (crit,) = backup.check_backup_freshness(tmp_path, max_age_h=26, crit_age_h=48)
    assert Status.CRITICAL == crit.status and "3.1 days old" in crit.summary


def test_no_backup_is_critical(tmp_path: Path) -> None:
    """A directory without a single matching file is CRITICAL, not OK."""
    _file(tmp_path / "notes.txt", age_h=1)
    (finding,) = backup.check_backup_freshness(tmp_path, pattern="*.dump,*.sql.gz")
    assert Status.CRITICAL == finding.status
    assert "No backup matching" in finding.summary


def test_shrunken_backup_is_a_warning(tmp_path: Path) -> None:
    """A newest backup under half the size of the previous one is flagged as incomplete."""
    _file(tmp_path / "a.dump", age_h=25, size=10_000)
    _file(tmp_path / "b.dump", age_h=1, size=3_000)
    fresh, size = backup.check_backup_freshness(tmp_path)
    assert (Status.OK, Status.WARNING) == (fresh.status, size.status)
    assert "30% of the previous a.dump" in size.summary


def test_missing_directory_is_unknown(tmp_path: Path) -> None:
    """A backup directory that is not there (unmounted volume) is UNKNOWN with the reason."""
    for check in (backup.check_backup_freshness, backup.check_backup_readable):
        (finding,) = check(tmp_path / "nope")
        assert Status.UNKNOWN == finding.status
        assert "does not exist" in finding.summary


def test_real_archive_is_readable(tmp_path: Path, archive: bytes) -> None:
    """A complete pg_dump archive passes pg_restore --list and a full read."""
    _file(tmp_path / "aura.dump", age_h=2, data=archive)
    (finding,) = backup.check_backup_readable(tmp_path)
    assert Status.OK == finding.status, finding.summary
    assert "every data block" in finding.summary


@pytest.mark.parametrize("keep", [0.3, 0.95])
def test_truncated_archive_is_unreadable(tmp_path: Path, archive: bytes, keep: float) -> None:
    """An archive cut short is CRITICAL, even when its table of contents still lists (95 %)."""
    _file(tmp_path / "old.dump", age_h=26, data=archive)
    _file(tmp_path / "new.dump", age_h=1, data=archive[: int(len(archive) * keep)])
    (finding,) = backup.check_backup_readable(tmp_path, pattern="*.dump")
    assert Status.CRITICAL == finding.status
    assert "new.dump" in finding.summary and "unreadable" in finding.summary
    step = "--list" if keep < 0.5 else "--file=/dev/null"
    assert f"pg_restore {step} failed" in finding.summary


def test_too_old_pg_restore_is_unknown(tmp_path: Path, archive: bytes) -> None:
    """A pg_restore older than the archive refuses it: UNKNOWN, never "unreadable"."""
    old = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_restore"))
    newest = backup.find_pg_tool("pg_restore")
    older = [p for p in old if backup._tool_version(str(p)) < backup._tool_version(str(newest))]
    _need(bool(older), "needs a pg_restore older than the newest one (Debian 15 + pgserver 16)")
    _file(tmp_path / "a.dump", age_h=1, data=archive)
    (finding,) = backup.check_backup_readable(tmp_path, pg_restore=str(older[0]))
    assert Status.UNKNOWN == finding.status
    assert "too old" in finding.summary


def test_missing_pg_restore_is_unknown(tmp_path: Path, archive: bytes) -> None:
    """A pg_restore that cannot be run is UNKNOWN naming it."""
    _file(tmp_path / "a.dump", age_h=1, data=archive)
    (finding,) = backup.check_backup_readable(tmp_path, pg_restore=str(tmp_path / "pg_restore"))
    assert Status.UNKNOWN == finding.status
    assert "pg_restore" in finding.summary


def test_hanging_pg_restore_is_unknown_within_timeout(tmp_path: Path, archive: bytes) -> None:
    """A pg_restore that never finishes is killed at the timeout: UNKNOWN, not a hang."""
    fake = tmp_path / "bin" / "pg_restore"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nsleep 60\n")
    fake.chmod(0o755)
    _file(tmp_path / "b" / "a.dump", age_h=1, data=archive)
    t0 = time.monotonic()
    (finding,) = backup.check_backup_readable(tmp_path / "b", timeout_s=1, pg_restore=str(fake))
    assert time.monotonic() - t0 < 5
    assert Status.UNKNOWN == finding.status
    assert "did not finish within 1 s" in finding.summary


def test_hanging_file_is_unknown_within_timeout(tmp_path: Path) -> None:
    """A backup that blocks on open (a FIFO, a hung mount) is UNKNOWN within the timeout."""
    fifo = tmp_path / "stuck.dump"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    try:
        (finding,) = backup.check_backup_readable(fifo, timeout_s=1)
    finally:  # unblock the reader thread left behind
        with contextlib.suppress(OSError):
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
    assert time.monotonic() - t0 < 5
    assert Status.UNKNOWN == finding.status
    assert "did not return within 1 s" in finding.summary


def test_plain_dumps_need_their_trailer(tmp_path: Path) -> None:
    """Plain and gzipped SQL dumps are readable only with pg_dump's closing line."""
    body = b"CREATE TABLE t ();\n" * 100
    done = body + b"--\n-- PostgreSQL database dump complete\n--\n"
    cases = {
        "ok.sql": (done, Status.OK),
        "cut.sql": (body, Status.CRITICAL),
        "ok.sql.gz": (gzip.compress(done), Status.OK),
        "cut.sql.gz": (gzip.compress(done)[:-20], Status.CRITICAL),
    }
    for name, (data, expected) in cases.items():
        path = _file(tmp_path / name, age_h=1, data=data)
        (finding,) = backup.check_backup_readable(path)
        assert expected == finding.status, (name, finding.summary)


def test_encrypted_backup_is_unknown(tmp_path: Path) -> None:
    """An encrypted backup cannot be verified without its key: UNKNOWN, said so."""
    path = _file(tmp_path / "aura.dump.gpg", age_h=1, data=b"\x85\x02" + os.urandom(200))
    (finding,) = backup.check_backup_readable(path)
    assert Status.UNKNOWN == finding.status and "encrypted" in finding.summary


def test_find_pg_tool_prefers_the_newest() -> None:
    """find_pg_tool returns a runnable tool at least as new as any other one on the host."""
    tool = backup.find_pg_tool("pg_restore")
    _need(tool is not None, "no pg_restore on this host")
    version = backup._tool_version(str(tool))
    others = [str(p) for p in Path("/usr/lib/postgresql").glob("*/bin/pg_restore")]
    assert all(backup._tool_version(o) <= version for o in others)


def test_listing_never_hangs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory listing that blocks (hung NFS) is UNKNOWN after the timeout."""
    release = threading.Event()

    def stuck(directory: Path, patterns: list[str]) -> list[dict[str, object]]:
        release.wait(30)
        return []

    monkeypatch.setattr(backup, "_list_backups", stuck)
    try:
        t0 = time.monotonic()
        (finding,) = backup.check_backup_freshness(tmp_path, timeout_s=1)
        assert time.monotonic() - t0 < 5
    finally:
        release.set()
    assert Status.UNKNOWN == finding.status and "did not return" in finding.summary
