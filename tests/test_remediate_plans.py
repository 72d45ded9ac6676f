"""The database, backup and file mitigations: exact commands, gated, and real when approved."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from aura_ops import remediate
from aura_ops.errors import ConfigError
from aura_ops.sandbox.postgres import Postgres, start_postgres

IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(autouse=True)
def audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test audits into its own file."""
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("AURA_OPS_AUDIT_LOG", str(path))
    monkeypatch.delenv("AURA_OPS_TRIGGER", raising=False)
    return path


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A real PostgreSQL."""
    with start_postgres(tmp_path_factory.mktemp("pg") / "data") as server:
        yield server


def test_commands_are_exact_and_secret_free() -> None:
    """Each plan is one command naming the DSN's variable, never its value."""
    idle = remediate.plan_terminate_idle("AURA_DB_DSN", state="idle in transaction",
                                         older_than_s=60, application="aura-export")  # fmt: skip
    assert idle.command[:2] == ("psql", "$AURA_DB_DSN")
    assert (
        "WHERE state = 'idle in transaction' AND state_change < now() - interval '60 seconds'"
        in idle.command[3]
    )
    assert "application_name = 'aura-export'" in idle.command[3]
    index = remediate.plan_create_index("job_events", "job_id", dsn_env="AURA_DB_DSN")
    assert index.command[3] == (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS job_events_job_id_idx ON job_events (job_id)"
    )
    dump = remediate.plan_backup("AURA_DB_DSN", "/var/backups/postgres")
    assert dump.command[:2] == ("pg_dump", "--format=custom")
    assert dump.command[2].startswith("--file=/var/backups/postgres/manual-")
    assert dump.command[3] == "$AURA_DB_DSN"
    prune = remediate.plan_delete_old_files("/b", older_than_days=30, pattern="*.dump")
    assert prune.command_line == "find /b -type f -name '*.dump' -mtime +30 -delete"


def test_bad_input_is_refused() -> None:
    """Identifiers that are not plain names, odd states and zero-day retention are refused."""
    with pytest.raises(ConfigError):
        remediate.plan_create_index("jobs; DROP TABLE jobs", "id", dsn_env="X")
    with pytest.raises(ConfigError):
        remediate.plan_create_index("jobs", "", dsn_env="X")
    with pytest.raises(ConfigError):
        remediate.plan_terminate_idle("X", state="active")
    with pytest.raises(ConfigError):
        remediate.plan_delete_old_files("/", older_than_days=0)
    quoted = remediate.plan_terminate_idle("X", application="o'brien")
    assert "application_name = 'o''brien'" in quoted.command[3]


def test_dry_run_by_default(tmp_path: Path, audit: Path) -> None:
    """Without approval nothing runs: the old file stays, the dry run is audited."""
    old = tmp_path / "files" / "old.tmp"
    old.parent.mkdir()
    old.write_text("x")
    os.utime(old, (time.time() - 10 * 86400,) * 2)
    result = remediate.execute(remediate.plan_delete_old_files(old.parent, older_than_days=7))
    assert "dry-run" == result.outcome and old.exists()
    assert "dry-run" == json.loads(audit.read_text().splitlines()[-1])["outcome"]


def test_approved_cleanup_deletes_only_old_files(tmp_path: Path) -> None:
    """Approved, the cleanup deletes files older than the retention and keeps the rest."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "new.tmp").write_text("x")
    (root / "old.tmp").write_text("x")
    os.utime(root / "old.tmp", (time.time() - 10 * 86400,) * 2)
    plan = remediate.plan_delete_old_files(root, older_than_days=7)
    assert "executed" == remediate.execute(plan, approve=True, approver="test").outcome
    assert ["new.tmp"] == sorted(p.name for p in root.iterdir())


def test_approved_terminate_idle_ends_the_leak(
    pg: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Approved, the idle-in-transaction sessions of the named application are ended."""
    if shutil.which("psql") is None:
        if IN_CI:
            pytest.fail("required in CI: psql (apt-get install postgresql-client)")
        pytest.skip("psql not on PATH")
    monkeypatch.setenv("AURA_TEST_DSN", pg.dsn)
    leak = psycopg.connect(pg.dsn, application_name="leaky", autocommit=False)
    leak.execute("SELECT 1")
    plan = remediate.plan_terminate_idle("AURA_TEST_DSN", state="idle in transaction",
                                         older_than_s=0, application="leaky")  # fmt: skip
    result = remediate.execute(plan, approve=True, approver="test")
    assert "executed" == result.outcome, result.output
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leaky'"
        ).fetchone() or (0,)
    assert 0 == n
    leak.close()
