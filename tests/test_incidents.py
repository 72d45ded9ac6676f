"""Incidents from recorded runs: grouping by alert group and time or by --incident, listing,
and seed 002's monthly metrics on a set of incidents recorded in a real serve database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest
from matplotlib.figure import Figure
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from aura_ops.alert_routes import RunRequest
from aura_ops.alerts import Alert
from aura_ops.cli import EXIT_USAGE, main
from aura_ops.display import FINDINGS_MIME
from aura_ops.errors import ConfigError
from aura_ops.findings import Finding, Status, roll_up
from aura_ops.incident_metrics import (
    format_duration,
    format_monthly_report,
    incident_metrics,
    month_period,
    plot_incident_metrics,
)
from aura_ops.incidents import find_incident, list_incidents, validate_incident_id
from aura_ops.report import render_report
from aura_ops.runstore import RunStore

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    """A UTC time from ``"2026-11-03 10:00:00"``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def finding(
    check: str, status: str, summary: str, *, labels: dict[str, Any] | None = None, **kw: Any
) -> Finding:
    """A finding as a check would record it."""
    return Finding(check, kw.pop("subject", "aura-api"), status, summary, labels=labels or {},
                   source=f"test://{check}", **kw)  # fmt: skip


def write_run(
    out: Path,
    run_id: str,
    *,
    started: dt.datetime,
    findings: Sequence[Finding],
    runbook: str = "high-error-rate",
    seconds: float = 30.0,
    severity: str = "",
    trigger: str = "manual",
    incident: str = "",
    parameters: dict[str, Any] | None = None,
    outputs: Sequence[str] = (),
) -> Path:
    """A run directory as the runner writes it: findings.json, notebook.ipynb, report.html."""
    run_dir = out / f"{started:%Y-%m-%d}" / run_id
    run_dir.mkdir(parents=True)
    verdict = roll_up(findings)
    finished = started + dt.timedelta(seconds=seconds)
    record: dict[str, Any] = {
        "schema": 1, "run_id": run_id, "runbook": runbook, "title": runbook.replace("-", " "),
        "environment": "", "trigger": trigger, "parameters": parameters or {},
        "window": {"start": (started - dt.timedelta(minutes=15)).isoformat(),
                   "end": started.isoformat()},
        "started_at": started.isoformat(), "finished_at": finished.isoformat(),
        "duration_s": seconds, "execution": {"status": "completed"},
        "verdict": verdict.to_dict(),
        "severity": {"level": severity, "priority": "P" + str(int(severity[-1]) - 1),
                     "reason": "test"} if severity else None,
        "next_steps": [[f.summary, f.hint] for f in verdict.top if f.hint],
        "findings": [f.to_dict() for f in findings],
        "files": {"notebook": "notebook.ipynb", "report": "report.html"},
    }  # fmt: skip
    if incident:
        record["incident"] = incident
    (run_dir / "findings.json").write_text(json.dumps(record, indent=2))
    cell = new_code_cell("show(findings)")
    cell.outputs = [
        new_output(
            "display_data",
            data={
                "text/plain": "\n".join(f.summary for f in findings),
                FINDINGS_MIME: {"schema": 1, "findings": [f.to_dict() for f in findings]},
            },
        )
    ]
    cell.outputs += [new_output("stream", name="stdout", text=t) for t in outputs]
    nb = new_notebook(cells=[new_markdown_cell(f"# {runbook}"), cell])  # fmt: skip
    nbformat.write(nb, run_dir / "notebook.ipynb")
    (run_dir / "report.html").write_text(render_report(nb, record))
    return run_dir


@dataclasses.dataclass
class Recorder:
    """A real serve database driven with a settable clock: alerts fire, runs run, alerts
    resolve, exactly when the test says."""

    store: RunStore
    out: Path
    now: float = 0.0

    def clock(self) -> float:
        """The store's clock."""
        return self.now

    def alert(self, name: str, starts: dt.datetime, status: str = "firing", **labels: str) -> Alert:
        """One Alertmanager alert of ``name`` that started at ``starts``."""
        fp = hashlib.sha256(f"{name}{sorted(labels.items())}".encode()).hexdigest()[:16]
        all_labels = {"alertname": name, **labels}
        return Alert("alertmanager", status, name, all_labels, {}, starts.isoformat(),
                     f"alertmanager:{fp}:{starts.isoformat()}", fp)  # fmt: skip

    def fire(self, alert: Alert, received: dt.datetime, runbook: str = "high-error-rate") -> int:
        """Deliver a firing alert at ``received``; returns the run it queued (or joined)."""
        self.now = received.timestamp()
        req = RunRequest(runbook, "", {}, "test", f"{alert.name}:{sorted(alert.labels.items())}")
        _, (outcome,) = self.store.record_delivery("alertmanager", [(alert, req, "")])
        assert outcome.run_id is not None, outcome
        return outcome.run_id

    def run(self, run_id: int, started: dt.datetime, **kw: Any) -> Path:
        """Claim and finish serve run ``run_id``, leaving its run directory."""
        self.now = started.timestamp()
        claimed = self.store.claim()
        assert claimed is not None and claimed["id"] == run_id
        rid = f"{started:%H%M%S}-{claimed['runbook']}-{run_id:04d}"
        run_dir = write_run(self.out, rid, started=started, runbook=claimed["runbook"],
                            trigger="alert", **kw)  # fmt: skip
        record = json.loads((run_dir / "findings.json").read_text())
        self.now = dt.datetime.fromisoformat(record["finished_at"]).timestamp()
        self.store.finish(run_id, state="done", verdict=record["verdict"]["status"],
                          headline=record["verdict"]["headline"], run_dir=str(run_dir),
                          duration_s=record["duration_s"])  # fmt: skip
        return run_dir

    def resolve(self, alert: Alert, received: dt.datetime) -> None:
        """Deliver the resolution of ``alert`` at ``received``."""
        self.now = received.timestamp()
        self.store.record_delivery(
            "alertmanager", [(dataclasses.replace(alert, status="resolved"), None, "")]
        )


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    """A serve database and an output root in tmp_path."""
    rec = Recorder(store=None, out=tmp_path / "out")  # type: ignore[arg-type]
    rec.store = RunStore(tmp_path / "out" / "aura-ops.db", clock=rec.clock)
    yield rec
    rec.store.close()


CAUSE = finding("logs.errors_since", "CRITICAL",
                "KeyError on POST /api/render started within a second of deploy v2.4.1",
                labels={"role": "cause", "change": {"version": "v2.4.1"}})  # fmt: skip
SYMPTOM = finding("metrics.error_ratio", "CRITICAL", "POST /api/render: 100 % of requests failed",
                  observed=1.0, labels={"endpoint": "POST /api/render"})  # fmt: skip


def record_november(rec: Recorder) -> None:
    """Five incidents in November 2026 and one in October (see the monthly report test)."""
    provider = finding("providers.health", "CRITICAL", "openai: circuit open, 40 % errors")
    a = rec.alert("AuraHighErrorRatio", at("2026-11-03 10:00:00"), job="aura-api")
    rec.run(
        rec.fire(a, at("2026-11-03 10:00:20")),
        at("2026-11-03 10:01:00"),
        findings=[SYMPTOM, CAUSE],
        severity="SEV-1",
    )
    rec.resolve(a, at("2026-11-03 10:20:00"))
    for day, run_after, resolve_after in (
        ("05", "09:03:00", "09:45:00"),
        ("12", "09:02:00", "10:00:00"),
    ):
        b = rec.alert("AuraProviderErrors", at(f"2026-11-{day} 09:00:00"), job="aura-api")
        rec.run(
            rec.fire(b, at(f"2026-11-{day} 09:00:10"), "provider-failures"),
            at(f"2026-11-{day} {run_after}"),
            findings=[provider],
            severity="SEV-2",
        )
        rec.resolve(b, at(f"2026-11-{day} {resolve_after}"))
    disk = finding("system.disk_usage", "WARNING", "/var/lib/aura 91 % full")
    write_run(
        rec.out,
        "080000-storage-space-aaaa",
        runbook="storage-space",
        findings=[disk],
        started=at("2026-11-20 08:00:00"),
        severity="SEV-3",
        incident="2026-11-20-disk",
    )
    write_run(
        rec.out,
        "115930-storage-space-bbbb",
        runbook="storage-space",
        findings=[finding("system.disk_usage", "OK", "/var/lib/aura 60 % full")],
        started=at("2026-11-20 11:59:30"),
        severity="SEV-4",
        incident="2026-11-20-disk",
    )
    e = rec.alert("AuraDatabaseDown", at("2026-11-25 06:00:00"), job="aura-db")
    rec.run(
        rec.fire(e, at("2026-11-25 06:00:05"), "database-connections"),
        at("2026-11-25 06:04:00"),
        severity="SEV-2",
        findings=[finding("database.connectivity", "CRITICAL", "postgres refuses")],
    )
    write_run(
        rec.out,
        "120000-service-down-cccc",
        runbook="service-down",
        findings=[finding("availability.api", "CRITICAL", "nothing listens on :8000")],
        started=at("2026-10-30 12:00:00"),
        severity="SEV-1",
        incident="2026-10-30-outage",
    )


def test_monthly_report_gives_exact_counts_mttd_mttr_and_causes(recorder: Recorder) -> None:
    """November's report counts incidents by severity and gives MTTD, MTTR and top causes."""
    record_november(recorder)
    since, until, label = month_period("2026-11")
    found = list_incidents(recorder.out, since=since, until=until)
    metrics = incident_metrics(found, label=label)
    assert 5 == metrics.total
    assert {"SEV-1": 1, "SEV-2": 3, "SEV-3": 1, "SEV-4": 0} == dict(metrics.by_severity)
    assert 1 == metrics.open
    assert 150.0 == metrics.mttd_s  # (60 + 180 + 120 + 240) / 4
    assert (1200 + 2700 + 3600 + 14400) / 4 == metrics.mttr_s
    assert {"SEV-1": 1200.0, "SEV-2": 3150.0, "SEV-3": 14400.0} == dict(metrics.mttr_by_severity_s)
    assert (("Provider API failures", 2), ("Database issues", 1), ("Deployment bugs", 1),
            ("Infrastructure issues", 1)) == metrics.top_causes  # fmt: skip
    report = format_monthly_report(metrics)
    for line in (
        "## Incident Report: November 2026",
        "- **Total Incidents**: 5",
        "   - SEV-2: 3",
        "- **Open**: 1",
        "- **MTTD**: 2.5 minutes (target: < 5 min)",
        "- **MTTR**: 1.5 hours",
        "   - SEV-1: 20 minutes",
        "   - SEV-2: 52.5 minutes (target: < 1 hour)",
        "   - SEV-3: 4 hours (target: < 1 day)",
        "   1. Provider API failures (2)",
        "   4. Infrastructure issues (1)",
    ):
        assert line in report.splitlines(), line
    assert "2026-10-30-outage" not in report and "2026-11-20-disk" in report


def test_incidents_command_lists_and_reports(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """`aura-ops incidents` lists severity, start, end and status; --report writes the
    report as markdown, HTML with the plot embedded, and the PNG."""
    record_november(recorder)
    out = str(recorder.out)
    assert 0 == main(["incidents", "-o", out])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["ID", "SEVERITY", "STATUS", "START", "(UTC)"]
    row = next(ln for ln in lines if ln.startswith("20261103-1000-aurahigherrorratio"))
    assert row.split()[1:7] == ["SEV-1", "resolved", "2026-11-03", "10:00:00", "2026-11-03",
                                "10:20:00"]  # fmt: skip
    opened = next(ln for ln in lines if ln.startswith("20261125-0600-auradatabasedown"))
    assert opened.split()[1:5] == ["SEV-2", "open", "2026-11-25", "06:00:00"]
    assert 7 == len(lines)  # header + 6 incidents
    assert 0 == main(["incidents", "-o", out, "--month", "2026-11", "--report"])
    assert "- **Total Incidents**: 5" in capsys.readouterr().out
    folder = recorder.out / "incidents" / "reports" / "2026-11"
    assert "data:image/png;base64," in (folder / "incident-report.html").read_text()
    assert (folder / "incident-metrics.png").read_bytes().startswith(b"\x89PNG")
    assert (
        "![incident metrics](incident-metrics.png)" in (folder / "incident-report.md").read_text()
    )
    assert 0 == main(["incidents", "-o", out, "--since", "2026-11-12", "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert ["20261112-0900-auraprovidererrors", "2026-11-20-disk",
            "20261125-0600-auradatabasedown"] == [i["id"] for i in listed]  # fmt: skip


def test_alerts_group_by_alert_group_and_time(recorder: Recorder) -> None:
    """Alerts of one group while the incident is open, or within the gap after it resolved,
    are one incident; another job, or the same alert hours later, is another."""
    rec = recorder
    one = rec.alert("AuraHighErrorRatio", at("2026-11-03 10:00:00"), job="aura-api", pod="a")
    two = rec.alert("AuraHighErrorRatio", at("2026-11-03 10:10:00"), job="aura-api", pod="b")
    other = rec.alert("AuraHighErrorRatio", at("2026-11-03 10:05:00"), job="aura-worker")
    later = rec.alert("AuraHighErrorRatio", at("2026-11-03 14:00:00"), job="aura-api")
    rec.run(rec.fire(one, at("2026-11-03 10:00:10")), at("2026-11-03 10:00:15"),
            findings=[SYMPTOM], severity="SEV-2")  # fmt: skip
    rec.run(rec.fire(other, at("2026-11-03 10:05:10")), at("2026-11-03 10:05:15"),
            findings=[SYMPTOM], severity="SEV-3")  # fmt: skip
    rec.run(rec.fire(two, at("2026-11-03 10:10:10")), at("2026-11-03 10:10:15"),
            findings=[CAUSE, SYMPTOM], severity="SEV-1")  # fmt: skip
    rec.resolve(one, at("2026-11-03 10:30:00"))
    rec.resolve(two, at("2026-11-03 10:40:00"))
    rec.run(rec.fire(later, at("2026-11-03 14:00:10")), at("2026-11-03 14:00:15"),
            findings=[SYMPTOM], severity="SEV-2")  # fmt: skip
    found = {i.id: i for i in list_incidents(rec.out)}
    assert ["20261103-1000-aurahigherrorratio", "20261103-1005-aurahigherrorratio",
            "20261103-1400-aurahigherrorratio"] == sorted(found)  # fmt: skip
    first = found["20261103-1000-aurahigherrorratio"]
    assert (2, 2, "SEV-1", "resolved") == (len(first.runs), len(first.alerts), first.severity,
                                           first.status)  # fmt: skip
    assert (at("2026-11-03 10:00:00"), at("2026-11-03 10:40:00")) == (first.started_at,
                                                                      first.ended_at)  # fmt: skip
    assert 15.0 == first.detect_s
    assert "alertname=AuraHighErrorRatio,job=aura-api" == first.group
    assert "open" == found["20261103-1005-aurahigherrorratio"].status
    short = {i.id for i in list_incidents(rec.out, gap_s=4 * 3600)}
    assert 2 == len(short)  # with a 4-hour gap, the 14:00 alert rejoins the first incident


def test_manual_runs_join_or_make_incidents(recorder: Recorder) -> None:
    """A manual run of the incident's runbook during it joins it; other WARNING/CRITICAL runs
    group by runbook and time and an OK re-run resolves them; OK-only, drill and postmortem
    runs are no incidents."""
    rec = recorder
    a = rec.alert("AuraHighErrorRatio", at("2026-11-03 10:00:00"), job="aura-api")
    rec.run(rec.fire(a, at("2026-11-03 10:00:10")), at("2026-11-03 10:00:15"),
            findings=[SYMPTOM], severity="SEV-2")  # fmt: skip
    write_run(rec.out, "101500-high-error-rate-0001", started=at("2026-11-03 10:15:00"),
              findings=[CAUSE], severity="SEV-1")  # fmt: skip
    rec.resolve(a, at("2026-11-03 10:30:00"))
    disk = [finding("system.disk_usage", "WARNING", "91 % full")]
    write_run(rec.out, "080000-storage-space-0002", runbook="storage-space",
              started=at("2026-11-04 08:00:00"), findings=disk)  # fmt: skip
    write_run(rec.out, "081000-storage-space-0003", runbook="storage-space",
              started=at("2026-11-04 08:10:00"),
              findings=[finding("system.disk_usage", "OK", "60 % full")])  # fmt: skip
    write_run(
        rec.out,
        "090000-queue-backup-0004",
        runbook="queue-backup",
        started=at("2026-11-04 09:00:00"),
        findings=[finding("queues.depth", "OK", "3")],
    )
    write_run(rec.out, "100000-high-error-rate-0005", trigger="drill",
              started=at("2026-11-04 10:00:00"), findings=[CAUSE])  # fmt: skip
    write_run(rec.out, "110000-postmortem-0006", runbook="postmortem",
              started=at("2026-11-04 11:00:00"), findings=[CAUSE])  # fmt: skip
    found = list_incidents(rec.out)
    assert ["20261103-1000-aurahigherrorratio", "20261104-0800-storage-space"] == [
        i.id for i in found]  # fmt: skip
    alert, disk_incident = found
    assert ["high-error-rate"] * 2 == [r.runbook for r in alert.runs]
    assert "SEV-1" == alert.severity  # the manual run found the cause
    assert ("resolved", at("2026-11-04 08:10:30")) == (disk_incident.status,
                                                       disk_incident.ended_at)  # fmt: skip
    assert disk_incident.detect_s is None  # no alert: no time to detect


def test_explicit_incident_ids(recorder: Recorder) -> None:
    """Runs named with --incident form that incident; an id equal to an automatic
    incident's joins it."""
    rec = recorder
    a = rec.alert("AuraHighErrorRatio", at("2026-11-03 10:00:00"), job="aura-api")
    rec.run(rec.fire(a, at("2026-11-03 10:00:10")), at("2026-11-03 10:00:15"),
            findings=[SYMPTOM], severity="SEV-2")  # fmt: skip
    write_run(rec.out, "120000-database-connections-0001", runbook="database-connections",
              started=at("2026-11-03 12:00:00"), findings=[CAUSE],
              incident="20261103-1000-aurahigherrorratio")  # fmt: skip
    for n, when in enumerate(("2026-11-05 09:00:00", "2026-11-06 09:00:00")):
        write_run(rec.out, f"0900{n}0-slow-performance-000{n}", runbook="slow-performance",
                  started=at(when), findings=[SYMPTOM], incident="render-slow")  # fmt: skip
    found = {i.id: i for i in list_incidents(rec.out)}
    assert {"20261103-1000-aurahigherrorratio", "render-slow"} == set(found)
    assert 2 == len(found["20261103-1000-aurahigherrorratio"].runs)
    assert found["render-slow"].explicit and 2 == len(found["render-slow"].runs)
    assert "render-slow" == find_incident("render-slow", rec.out).id
    assert "render-slow" == find_incident("latest", rec.out).id


def test_bad_input_is_a_usage_error(recorder: Recorder, tmp_path: Path) -> None:
    """Unknown incidents, malformed ids and months, and a file that is no serve database
    are one-line usage errors (exit 64)."""
    record_november(recorder)
    with pytest.raises(ConfigError, match="unknown incident 'nope'"):
        find_incident("nope", recorder.out)
    for bad in ("../etc", "", "a/b", "x" * 81):
        with pytest.raises(ConfigError):
            validate_incident_id(bad)
    assert "2026-11-20-disk" == validate_incident_id("2026-11-20-disk")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="serve database"):
        list_incidents(recorder.out, garbage)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(ConfigError, match="serve database"):
        list_incidents(recorder.out, empty)
    out = str(recorder.out)
    assert EXIT_USAGE == main(["postmortem", "nope", "-o", out])
    assert EXIT_USAGE == main(["incidents", "-o", out, "--month", "2026-13"])
    assert EXIT_USAGE == main(["incidents", "-o", out, "--db", str(tmp_path / "none.db")])
    assert EXIT_USAGE == main(["run", "high-error-rate", "--incident", "../x", "-o", out])


def test_durations_and_plot(recorder: Recorder) -> None:
    """Durations read like seed 002's report; the plot is a Figure with two panels."""
    assert ["-", "42 s", "3.2 minutes", "45 minutes", "4 hours", "1.5 hours", "3 days"] == [
        format_duration(s) for s in (None, 42, 192, 2700, 14400, 5475, 3 * 86400)
    ]
    record_november(recorder)
    fig = plot_incident_metrics(incident_metrics(list_incidents(recorder.out), label="all"))
    assert isinstance(fig, Figure) and 2 == len(fig.axes)
    empty = plot_incident_metrics(incident_metrics([], label="nothing"))
    assert 2 == len(empty.axes)


@pytest.mark.slow
def test_run_records_its_incident(project: Path) -> None:
    """`aura-ops run --incident ID` records the id in findings.json, and the run is listed
    under that incident."""
    out = project / "out"
    assert 1 == main(["run", "verdict", "-q", "-o", str(out), "-p", "level=WARNING",
                      "--incident", "2026-11-23-render"])  # fmt: skip
    (record,) = [json.loads(p.read_text()) for p in out.rglob("findings.json")]
    assert "2026-11-23-render" == record["incident"]
    (incident,) = list_incidents(out)
    assert ("2026-11-23-render", Status.WARNING) == (incident.id, incident.verdict)
    assert [record["run_id"]] == [r.run_id for r in incident.runs]
