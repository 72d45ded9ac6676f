"""One request traced across application logs and a real PostgreSQL server log, and judged."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from aura_ops.findings import Status
from aura_ops.logs import POSTGRES_LOG, check_trace, fetch_trace
from aura_ops.sandbox import db_faults, tracing
from aura_ops.sandbox.postgres import start_postgres

CID = "5e4bdbfbbd494d6a"


@pytest.fixture(scope="module")
def pg_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real PostgreSQL logging application names; yields (server log path, DSN)."""
    try:
        pg = start_postgres(
            tmp_path_factory.mktemp("pg") / "data", prefer=db_faults.choose_postgres()
        )
    except Exception as exc:  # no server can start here
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no PostgreSQL: {exc}")
    try:
        sb = SimpleNamespace(pg=pg, dsn=pg.dsn)
        if pg.kind == "external":
            pytest.skip("an external server's log is not ours to read")
        tracing.prepare(sb)
        yield tracing.db_log_path(sb), pg.dsn
    finally:
        pg.stop()


def fail_in_database(dsn: str, cid: str) -> None:
    """What the sandbox worker does for a poisoned project: a cast that fails, named by cid."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        time.sleep(0.3)  # the reload of log_line_prefix reaches new backends at start
        with pytest.raises(psycopg.errors.InvalidTextRepresentation), conn.transaction():
            conn.execute("SELECT set_config('application_name', %s, true)", (f"aura-worker/{cid}",))
            conn.execute(f"SELECT '24fps'::int AS fps /*correlation_id='{cid}'*/")


def line(at: dt.datetime, **fields: Any) -> str:
    return json.dumps({"ts": at.isoformat(), **fields}) + "\n"


def app_log(path: Path, cid: str, *, fail: bool, wait_s: float = 0.2, api_ms: float = 12.0) -> str:
    """API, provider and worker lines for ``cid`` as the sandbox writes them."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=wait_s + 1)
    later = now + dt.timedelta(seconds=wait_s)
    worker = (
        line(later, level="ERROR", logger="aura.worker", correlation_id=cid,
             message="Processing job 16 failed InvalidTextRepresentation: invalid input syntax",
             error_type="InvalidTextRepresentation")
        if fail else
        line(later, level="INFO", logger="aura.worker", correlation_id=cid,
             message="Processing job 16 done")
    )  # fmt: skip
    text = (
        line(now, level="INFO", logger="aura.providers", correlation_id=cid, message="openai ok")
        + line(now, level="INFO", logger="aura.api", correlation_id=cid, status=202,
               method="POST", route="/api/render", duration_ms=api_ms,
               message=f"HTTP 202 POST /api/render Duration {api_ms:.0f}ms")
        + line(now, level="INFO", logger="aura.api", correlation_id="someone-else",
               status=200, method="GET", route="/api/projects", message="HTTP 200")
        + worker
    )  # fmt: skip
    path.write_text(text)
    return str(path)


def test_postgres_log_lines_carry_the_id(pg_log: tuple[str, str]) -> None:
    """The server's ERROR and STATEMENT lines are read with component, level and the ID."""
    log, dsn = pg_log
    cid = uuid.uuid4().hex[:16]
    fail_in_database(dsn, cid)
    df = fetch_trace([], cid, db_log_paths=log)
    assert ["ERROR", "STATEMENT"] == list(df["level"])
    assert {"postgres"} == set(df["component"])
    assert [cid, cid] == list(df["correlation_id"])
    assert df["message"].iloc[0].startswith('invalid input syntax for type integer: "24fps"')


def test_failing_request_names_the_worker(pg_log: tuple[str, str], tmp_path: Path) -> None:
    """API 202, then a worker error and the database's: WARNING, failed in aura.worker."""
    log, dsn = pg_log
    cid = uuid.uuid4().hex[:16]
    fail_in_database(dsn, cid)
    path, timing = check_trace(
        app_log(tmp_path / "api.jsonl", cid, fail=True), cid, db_log_paths=log
    )
    assert Status.WARNING == path.status
    assert path.summary.startswith(f"Request {cid} failed in aura.worker, ")
    assert "(POST /api/render answered 202)" in path.summary
    assert "postgres logged the error" in path.summary
    assert "role" in path.labels
    assert Status.OK == timing.status


def test_successful_request_is_ok(tmp_path: Path) -> None:
    """API, provider and worker lines without an error: both findings OK, the other ID ignored."""
    path, timing = check_trace(app_log(tmp_path / "api.jsonl", CID, fail=False), CID)
    assert (Status.OK, Status.OK) == (path.status, timing.status)
    expected = f"Request {CID} succeeded: POST /api/render answered 202; 3 lines in aura.providers"
    assert path.summary.startswith(expected)
    assert "someone-else" not in json.dumps(path.evidence[0].data)


def test_long_wait_and_slow_api_warn(tmp_path: Path) -> None:
    """45 s between the API and the worker, or 7 s in the API: the timing is a WARNING."""
    waited = check_trace(app_log(tmp_path / "a.jsonl", CID, fail=False, wait_s=45), CID)[1]
    assert Status.WARNING == waited.status
    assert f"Request {CID} waited 45 s between aura.api → aura.worker" == waited.summary
    slow = check_trace(app_log(tmp_path / "b.jsonl", CID, fail=False, api_ms=7000), CID)[1]
    assert (Status.WARNING, f"Request {CID} took 7.0 s in the API") == (slow.status, slow.summary)


def test_rejected_request_warns(tmp_path: Path) -> None:
    """An API answer of 429 with no error line: WARNING, rejected."""
    at = dt.datetime.now(dt.UTC)
    log = tmp_path / "api.jsonl"
    log.write_text(
        line(at, level="WARNING", logger="aura.api", correlation_id=CID, status=429,
             method="GET", route="/api/projects", message="HTTP 429 GET /api/projects")
    )  # fmt: skip
    (path, _) = check_trace(str(log), CID)
    assert Status.WARNING == path.status
    assert path.summary.startswith(f"Request {CID} was rejected: GET /api/projects answered 429")


@pytest.mark.parametrize("case", ["unknown-id", "missing-log", "missing-db-log", "no-id"])
def test_nothing_traced_is_unknown(tmp_path: Path, case: str) -> None:
    """An ID found nowhere, an unreadable log, or no ID at all: UNKNOWN, never OK."""
    good = app_log(tmp_path / "api.jsonl", CID, fail=False)
    args = {
        "unknown-id": (good, "0000000000000000", ""),
        "missing-log": (str(tmp_path / "nope.jsonl"), CID, ""),
        "missing-db-log": (good, CID, str(tmp_path / "nope.log")),
        "no-id": (good, "", ""),
    }[case]
    findings = check_trace(args[0], args[1], db_log_paths=args[2])
    assert [Status.UNKNOWN] == [f.status for f in findings]


def test_postgres_format_reads_default_prefix_and_refuses_other_zones() -> None:
    """``%m [%p] `` lines parse; a named zone other than UTC cannot be placed and is malformed."""
    rec = POSTGRES_LOG.parse("2026-11-24 00:40:24.792 UTC [26060] LOG:  database system is ready")
    assert rec is not None
    assert ("INFO", "postgres", None) == (rec["level"], rec["logger"], rec["correlation_id"])
    assert dt.datetime(2026, 11, 24, 0, 40, 24, 792000, tzinfo=dt.UTC) == rec["ts"]
    assert POSTGRES_LOG.parse("2026-11-24 00:40:24.792 CET [1] LOG:  hello") is None
    fatal = POSTGRES_LOG.parse("2026-11-24 00:40:24 UTC [7] aura-api FATAL:  too many clients")
    assert fatal is not None
    assert ("CRITICAL", "aura-api") == (fatal["level"], fatal["service"])


@pytest.mark.parametrize("content", [b"\x00\x1f\x8b\x08garbage\xff\xfe\n<html>nginx</html>\n", b""])
def test_unreadable_db_log_is_unknown_and_the_app_side_still_traced(
    tmp_path: Path, content: bytes
) -> None:
    """A corrupt or empty PostgreSQL log: an UNKNOWN names it; the trace judges the app side."""
    db_log = tmp_path / "postgresql.log"
    db_log.write_bytes(content)
    good = app_log(tmp_path / "api.jsonl", CID, fail=False)
    blind, path, _ = check_trace(good, CID, db_log_paths=str(db_log))
    assert ("logs.trace_db", Status.UNKNOWN) == (blind.check, blind.status)
    assert str(db_log) in blind.subject
    assert Status.OK == path.status and str(db_log) not in path.source


def test_readable_db_log_without_the_request_adds_nothing(tmp_path: Path) -> None:
    """A PostgreSQL log whose lines parse but never name the request: no extra finding."""
    db_log = tmp_path / "postgresql.log"
    db_log.write_text("2026-11-24 00:40:24.792 UTC [26060] LOG:  database system is ready\n")
    good = app_log(tmp_path / "api.jsonl", CID, fail=False)
    checks = [f.check for f in check_trace(good, CID, db_log_paths=str(db_log))]
    assert ["logs.trace", "logs.trace_timing"] == checks
