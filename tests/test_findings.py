"""Findings, statuses and the verdict roll-up."""

import datetime as dt

import pytest

from aura_ops.findings import Evidence, Finding, Status, jsonable, rank, roll_up, unknown


def f(status: str, summary: str = "s", check: str = "c") -> Finding:
    return Finding(check, "subject", Status.parse(status), summary)


def test_status_order() -> None:
    """Statuses are ordered OK < INFO < UNKNOWN < WARNING < CRITICAL."""
    assert sorted(Status, key=int) == [Status.OK, Status.INFO, Status.UNKNOWN, Status.WARNING,
                                       Status.CRITICAL]


def test_exit_codes_follow_monitoring_plugins() -> None:
    """Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (INFO is OK)."""
    assert [s.exit_code for s in Status] == [0, 0, 3, 1, 2]


def test_roll_up_takes_the_worst() -> None:
    """The verdict is the worst status, and the headline names the worst findings."""
    v = roll_up([f("OK"), f("CRITICAL", "render fails"), f("WARNING"), f("UNKNOWN")])
    assert v.status == Status.CRITICAL
    assert v.headline == "render fails"
    v2 = roll_up([f("CRITICAL", "symptom"), Finding("c2", "s", Status.CRITICAL, "cause",
                                                    labels={"role": "cause"})])
    assert v2.headline == "cause (+1 more CRITICAL)"
    assert v.counts == {"OK": 1, "INFO": 0, "UNKNOWN": 1, "WARNING": 1, "CRITICAL": 1}
    assert [x.status for x in v.top] == [Status.CRITICAL, Status.WARNING, Status.UNKNOWN]


def test_roll_up_of_nothing_is_unknown() -> None:
    """No findings means nothing was looked at: UNKNOWN, never OK."""
    assert roll_up([]).status == Status.UNKNOWN


def test_unknown_beats_ok() -> None:
    """A source that could not be read keeps the verdict from being OK."""
    assert roll_up([f("OK"), f("INFO"), unknown("db", "pg", TimeoutError("no answer"))]).status \
        == Status.UNKNOWN


def test_all_ok_headline() -> None:
    """All-OK runs say how many checks passed."""
    v = roll_up([f("OK"), f("INFO")])
    assert (v.status, v.headline) == (Status.OK, "All 2 checks OK.")


def test_unknown_finding_keeps_reason() -> None:
    """unknown() names the exception type and message."""
    u = unknown("db.x", "postgres/aura", ConnectionRefusedError("connection refused"))
    assert u.status == Status.UNKNOWN
    assert "ConnectionRefusedError: connection refused" in u.summary


def test_round_trip() -> None:
    """to_dict/from_dict preserve a finding with evidence."""
    import pandas as pd

    df = pd.DataFrame({"route": ["/a", "/b"], "n": [1, 2]})
    orig = Finding("logs.x", "api", Status.WARNING, "two routes", observed=2, expected="< 1",
                   evidence=(Evidence.table(df, "routes"), Evidence.text("l1\nl2", "lines")),
                   source="read x", hint="look", reproduce="check_x()", labels={"k": "v"})
    back = Finding.from_dict(orig.to_dict())
    assert back == orig


def test_table_evidence_is_bounded() -> None:
    """Tables keep at most max_rows rows and remember the total."""
    ev = Evidence.table([{"i": i} for i in range(500)], "big", max_rows=10)
    assert len(ev.data["rows"]) == 10
    assert ev.data["total_rows"] == 500


def test_jsonable_handles_nan_and_times() -> None:
    """NaN becomes null and datetimes ISO strings."""
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert jsonable({"a": float("nan"), "t": when, "d": dt.timedelta(seconds=3)}) == {
        "a": None, "t": "2026-01-02T03:04:05+00:00", "d": 3.0}


def test_rank_is_stable() -> None:
    """rank() sorts worst first and keeps order among equals."""
    items = [f("OK", "a"), f("CRITICAL", "b"), f("OK", "c"), f("CRITICAL", "d")]
    assert [x.summary for x in rank(items)] == ["b", "d", "a", "c"]


def test_parse_rejects_unknown_status() -> None:
    """An unknown status name is a clear error."""
    with pytest.raises(ValueError, match="unknown status"):
        Status.parse("fine")


def test_severity_follows_the_seeds_thresholds() -> None:
    """Error rate > 5 % is SEV-1/P0, 3-5 % SEV-2, 1-3 % SEV-3; a service down is SEV-1."""
    from aura_ops.severity import assess

    def ratio(r: float) -> Finding:
        return Finding("metrics.error_ratio", "POST /x", Status.CRITICAL, "s", observed=r)

    assert assess([ratio(0.20)]).level == "SEV-1"
    assert assess([ratio(0.04)]).level == "SEV-2"
    assert (assess([ratio(0.02).replace(status=Status.WARNING)]).level,
            assess([ratio(0.02).replace(status=Status.WARNING)]).priority) == ("SEV-3", "P2")
    assert assess([Finding("health.endpoint", "api", Status.CRITICAL, "down")]).level == "SEV-1"
    assert assess([f("OK")]).level == "SEV-4"


def test_a_cause_that_explains_a_worse_symptom_leads_the_verdict() -> None:
    """A lock (WARNING) while readiness hangs (CRITICAL): the lock is raised and ranked first;
    OK findings and causes without a bad symptom are unchanged."""
    from aura_ops.findings import explains

    lock = Finding("database.blocking_locks", "db", Status.WARNING, "blocked by ALTER TABLE jobs",
                   labels={"blocking_pid": 42})  # fmt: skip
    fine = Finding("database.long_running_queries", "db", Status.OK, "none")
    ready = Finding("health.readiness", "api/ready", Status.CRITICAL, "not answering")
    raised, same = explains([lock, fine], [ready])
    assert (Status.CRITICAL, "cause", 42) == (
        raised.status, raised.labels["role"], raised.labels["blocking_pid"]
    )
    assert "api/ready is CRITICAL" in raised.summary and same == fine
    assert "database.blocking_locks" == roll_up([ready, raised, fine]).top[0].check
    healthy = Finding("health.readiness", "api/ready", Status.OK, "ready")
    assert [lock] == explains([lock], [healthy])
