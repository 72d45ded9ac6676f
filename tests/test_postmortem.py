"""Post-mortem bundles: timeline, root-cause candidates, impact, attachments and messages from
recorded incidents; nothing secret in them; and from a real alert fired and resolved."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
import yaml

from aura_ops.cli import EXIT_USAGE, main
from aura_ops.findings import Evidence, Status
from aura_ops.incidents import find_incident, list_incidents
from aura_ops.postmortem import write_postmortem
from aura_ops.postmortem_render import Link, render_html, render_markdown
from aura_ops.runner import run_runbook
from aura_ops.testing_prometheus import (
    find_alertmanager,
    find_prometheus,
    start_alertmanager,
    start_prometheus,
)

from .conftest import need
from .test_alert_e2e import TOKEN as AM_TOKEN
from .test_alert_e2e import _test_alertmanager, _test_rules, runs, serve, wait_for
from .test_incidents import CAUSE, Recorder, at, finding, write_run
from .test_incidents import recorder as recorder  # the fixture

REPO = Path(__file__).resolve().parent.parent

LOG_TABLE = Evidence.table(
    [{"endpoint": "POST /api/render", "requests": 60, "errors_5xx": 45, "error_ratio": 0.75}],
    "failing endpoints",
)
HEALTHY_TABLE = Evidence.table(
    [{"endpoint": "GET /api/projects", "requests": 240, "errors_5xx": 0, "error_ratio": 0.0}],
    "healthy endpoints",
)
SAMPLES = Evidence.text(
    "2026-11-03 10:00:41Z ERROR api.jsonl [5baa2ece95b2497a] HTTP 500 POST /api/render KeyError\n"
    "2026-11-03 10:00:42Z ERROR api.jsonl [1a304b98f35e4751] HTTP 500 POST /api/render KeyError",
    "sample 5xx lines of POST /api/render",
)


def record_incident(rec: Recorder, **extra: object) -> str:
    """AuraHighErrorRatio fires at 10:00:00 (delivered 10:00:20), the alert run at 10:01:00
    finds the bad deploy, a manual re-run at 10:12:00 is OK, the alert resolves at 10:20:00."""
    alert = rec.alert("AuraHighErrorRatio", at("2026-11-03 10:00:00"), job="aura-api")
    failing = finding("logs.failing_endpoints", "CRITICAL",
                      "POST /api/render fails 45/60 requests (75.0%), mostly KeyError",
                      observed=0.75, evidence=(LOG_TABLE, SAMPLES),
                      labels={"endpoint": "POST /api/render"})  # fmt: skip
    healthy = finding("logs.healthy_endpoints", "OK", "1 endpoint(s) under 1% 5xx",
                      evidence=(HEALTHY_TABLE,))  # fmt: skip
    rec.run(rec.fire(alert, at("2026-11-03 10:00:20")), at("2026-11-03 10:01:00"),
            findings=[failing, healthy, CAUSE], severity="SEV-1", **extra)  # fmt: skip
    write_run(rec.out, "101200-high-error-rate-0002", started=at("2026-11-03 10:12:00"),
              findings=[finding("logs.failing_endpoints", "OK", "no endpoint fails")])  # fmt: skip
    rec.resolve(alert, at("2026-11-03 10:20:00"))
    return "20261103-1000-aurahigherrorratio"


def test_bundle_from_a_recorded_incident(recorder: Recorder) -> None:
    """The bundle has the template's sections, the timeline in order with the right times,
    causes first, exact impact figures, attachments that open, and the messages."""
    incident_id = record_incident(recorder)
    assert 0 == main(["postmortem", incident_id, "-o", str(recorder.out)])
    bundle = recorder.out / "incidents" / incident_id
    doc = json.loads((bundle / "incident.json").read_text())
    assert [
        ("10:00:00", "alert-fired"), ("10:00:20", "alert-received"), ("10:01:00", "run-started"),
        ("10:01:30", "run-finished"), ("10:12:00", "run-started"), ("10:12:30", "run-finished"),
        ("10:20:00", "alert-resolved"),
    ] == [(e["at"][11:19], e["kind"]) for e in doc["timeline"]]  # fmt: skip
    assert "CRITICAL" in doc["timeline"][3]["text"] and "OK" in doc["timeline"][5]["text"]
    first = doc["root_cause_candidates"][0]["finding"]
    assert ("logs.errors_since", "cause") == (first["check"], first["labels"]["role"])
    impact = doc["impact"]
    assert (0.75, 45, 300) == (impact["peak_error_ratio"], impact["requests_failed"],
                              impact["requests_total"])  # fmt: skip
    assert pytest.approx(0.15 * 1200 / (0.001 * 30 * 86400)) == impact["budget_spent"]
    md = (bundle / "postmortem.md").read_text()
    assert md.startswith("# Incident Post-Mortem: AuraHighErrorRatio: KeyError on POST")
    for section in ("## Incident Summary",
                    "## Timeline", "## Root Cause", "## Impact Assessment", "## Resolution",
                    "## What Went Well", "## What Went Wrong", "## Action Items",
                    "## Lessons Learned", "## Questions Raised", "## Related Incidents",
                    "## Attachments", "## Communication drafts"):  # fmt: skip
        assert section in md.splitlines(), section
    for line in ("- **Date**: 2026-11-03", "- **Duration**: 20 minutes (10:00:00 → 10:20:00 UTC)",
                 "- **Severity**: SEV-1 / P0 (test)",
                 "- **Post-mortem due**: 2026-11-05 (SEV-1: within 48 hours)",
                 "| 10:00:00 | Alert fired: AuraHighErrorRatio (job=aura-api) |  |",
                 "| Requests failed | 45 of 300 | application logs of run "
                 "100100-high-error-rate-0001 (09:46:00→10:01:00 UTC) |"):  # fmt: skip
        assert line in md.splitlines(), line
    html = (bundle / "postmortem.html").read_text()
    assert "aura-finding" in html and "failing endpoints" in html  # cards with evidence
    index = json.loads((bundle / "attachments" / "index.json").read_text())
    assert ["100100-high-error-rate-0001", "101200-high-error-rate-0002"] == [
        a["run_id"] for a in index]  # fmt: skip
    for entry in index:
        nb = nbformat.read(bundle / entry["files"]["notebook"], as_version=4)
        assert nb.cells and (bundle / entry["files"]["report"]).is_file()
        assert f"({entry['files']['report']})" in md
    report = (bundle / index[0]["files"]["report"]).read_text()
    assert "KeyError on POST /api/render" in report
    comms = (bundle / "communications.md").read_text()
    for text in ("🚨 INCIDENT DETECTED", "Severity: SEV-1", "Updates will be posted every 15",
                 "⏰ UPDATE [10:12]", "Current Status: Resolved", "✅ RESOLVED [10:20]",
                 "Duration: 20 minutes", "Subject: [SEV1] AuraHighErrorRatio",
                 "Correlation IDs: 5baa2ece95b2497a, 1a304b98f35e4751",
                 "Request: <What help you need>"):  # fmt: skip
        assert text in comms, text


def test_existing_postmortem_is_kept_without_force(recorder: Recorder) -> None:
    """A second run refuses to overwrite postmortem.md (it may hold edits) unless --force."""
    incident_id = record_incident(recorder)
    out = str(recorder.out)
    assert 0 == main(["postmortem", incident_id, "-o", out])
    md = recorder.out / "incidents" / incident_id / "postmortem.md"
    md.write_text("edited by a human")
    assert EXIT_USAGE == main(["postmortem", incident_id, "-o", out])
    assert "edited by a human" == md.read_text()
    assert 0 == main(["postmortem", "latest", "-o", out, "--force"])
    assert md.read_text().startswith("# Incident Post-Mortem")


def test_no_secret_reaches_the_bundle(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Canaries in a run's parameters, notebook outputs, findings and report, and in an alert
    label, appear in no file of the bundle."""
    token, dsn_pw, param, key = "cnry-tok-7f3a9b1c", "cnry-pw-4d2e8f", "cnry-par-9a8b", "cnry-k1"
    monkeypatch.setenv("AURA_OPS_CANARY_TOKEN", token)
    monkeypatch.setenv("AURA_OPS_PM_DATABASE", f"postgresql://aura:{dsn_pw}@db:5432/aura")
    alert = recorder.alert("AuraHighErrorRatio", at("2026-11-03 10:00:00"), job="aura-api",
                           note=f"token seen: {token}", api_token=key)  # fmt: skip
    leaky = finding("logs.error_types", "CRITICAL", f"KeyError; caller sent {token}",
                    evidence=(Evidence.text(f"Authorization: Bearer {token}\npassword={key}",
                                            "lines"),))  # fmt: skip
    run_dir = recorder.run(
        recorder.fire(alert, at("2026-11-03 10:00:20")), at("2026-11-03 10:01:00"),
        findings=[leaky, CAUSE], severity="SEV-1",
        parameters={"db_password": param, "dsn_env": "AURA_OPS_PM_DATABASE", "note": token},
        outputs=[f"connecting to postgresql://aura:{dsn_pw}@db:5432/aura\n", f"{token}\n"],
    )  # fmt: skip
    nb = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    params = nbformat.v4.new_code_cell(f'db_password = "{param}"  # x\nsubject = "api"  # y')
    params.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(1, params)
    nbformat.write(nb, run_dir / "notebook.ipynb")
    with (run_dir / "report.html").open("a") as fh:
        fh.write(f"<p>{token} {param} {dsn_pw}</p>")
    recorder.resolve(alert, at("2026-11-03 10:20:00"))
    bundle = write_postmortem(find_incident("latest", recorder.out), output_root=recorder.out)
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert len(files) >= 8
    for path in files:
        data = path.read_bytes()
        for canary in (token, dsn_pw, param, key):
            assert canary.encode() not in data, f"{canary} in {path.relative_to(bundle)}"
    attached = next(bundle.rglob("notebook.ipynb")).read_text()
    assert "[REDACTED]" in attached and 'subject = \\"api\\"' in attached


def test_a_failed_run_is_in_the_timeline_not_attached(recorder: Recorder) -> None:
    """A serve run that failed without evidence is listed with its error; nothing attached."""
    rec = recorder
    alert = rec.alert("AuraQueueBacklog", at("2026-11-03 11:00:00"), job="aura-worker")
    run_id = rec.fire(alert, at("2026-11-03 11:00:05"), "queue-backup")
    rec.now = at("2026-11-03 11:00:06").timestamp()
    assert rec.store.claim() is not None
    rec.now = at("2026-11-03 11:05:06").timestamp()
    rec.store.finish(run_id, state="failed", error="RunbookError: the kernel died")
    (incident,) = list_incidents(rec.out)
    bundle = write_postmortem(incident, output_root=rec.out)
    doc = json.loads((bundle / "incident.json").read_text())
    assert [("11:00:00", "alert-fired"), ("11:00:05", "alert-received"),
            ("11:00:06", "run-started"), ("11:05:06", "run-failed")] == [
        (e["at"][11:19], e["kind"]) for e in doc["timeline"]]  # fmt: skip
    assert "the kernel died" in doc["timeline"][-1]["text"]
    assert "the run left no directory" == doc["attachments"][0]["missing"]
    md = (bundle / "postmortem.md").read_text()
    assert "- **Severity**: SEV-? (to fill: no run proposed one)" in md and "Not attached:" in md


def test_evidence_text_is_data_not_markup() -> None:
    """A hostile summary renders as text in markdown and HTML, with links kept as links."""
    hostile = "<script>alert(1)</script> | *bold* [x](javascript:alert(1))"
    blocks = [("h2", hostile), ("table", (["a", "b"], [[hostile, Link("report", "r.html")]]))]
    md, html = render_markdown(blocks), render_html(blocks, title=hostile)
    assert "<script>" not in md and "<script>" not in html
    assert "&lt;script&gt;" in html and '<a href="r.html">report</a>' in html
    assert "\\| \\*bold\\* \\[x\\](javascript:alert(1))" in md and "[report](r.html)" in md


@pytest.mark.slow
def test_postmortem_notebook_runs(recorder: Recorder, tmp_path: Path) -> None:
    """The postmortem notebook executes on a recorded incident: its verdict is the incident's
    worst finding, cause first, and it never counts as an incident itself."""
    incident_id = record_incident(recorder)
    result = run_runbook("postmortem", params={"output_root": str(recorder.out)},
                         output_root=recorder.out, root=REPO, timeout_s=240)  # fmt: skip
    assert "completed" == result.record["execution"]["status"], result.record["execution"]
    assert Status.CRITICAL == result.verdict.status
    assert "logs.errors_since" == result.verdict.top[0].check
    checks = [f.check for f in result.findings]
    assert "postmortem.incident" in checks
    assert [incident_id] == [i.id for i in list_incidents(recorder.out)]
    assert not (recorder.out / "incidents").exists()  # the write cell is skip-execution


def fire_and_resolve(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """bad-deploy in the sandbox → Prometheus rule → Alertmanager → aura-ops serve runs
    high-error-rate; then the fault is cleared and the alert resolves. Returns the output root,
    the serve database and the run."""
    from aura_ops.sandbox import Sandbox

    need(bool(find_prometheus() and find_alertmanager()), "prometheus/alertmanager missing")
    home, out, db = tmp_path / "home", tmp_path / "out", tmp_path / "serve.db"
    (home / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks" / "high-error-rate.ipynb", home / "notebooks")
    shutil.copytree(REPO / "parameters", home / "parameters")
    token_file = tmp_path / "am-token"
    token_file.write_text(AM_TOKEN)
    with contextlib.ExitStack() as stack:
        sandbox = stack.enter_context(Sandbox())
        sandbox.start_traffic(rps=25, seed=3)
        rules = _test_rules(tmp_path / "rules.yml")
        prom = stack.enter_context(start_prometheus([f"{sandbox.base_url}/metrics"],
                                                    rule_files=[rules]))  # fmt: skip
        env = {**sandbox.environment(), "prometheus_url": prom.url}
        env.pop("started_at", None)
        (home / "parameters" / "environments" / "example.yaml").write_text(
            yaml.safe_dump({"description": "the test sandbox", "parameters": env})
        )
        args = ("--db", str(db), "-o", str(out), "--workers", "1")
        _, url, log = stack.enter_context(serve(home, *args))
        am = stack.enter_context(start_alertmanager(_test_alertmanager(url, token_file)))
        config = yaml.safe_load(prom.config_path.read_text())
        target = am.url.removeprefix("http://")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        prom.config_path.write_text(yaml.safe_dump(config))
        prom.reload()
        time.sleep(2)  # a healthy baseline
        sandbox.inject("bad-deploy")

        def why() -> str:
            return str(log.read_text() + am.log_tail())

        done = ("done", "failed")
        (run,) = wait_for(lambda: [r for r in runs(url) if r["state"] in done], 150, why)
        assert ("done", "CRITICAL") == (run["state"], run["verdict"]), run
        sandbox.clear()
        get = f"{url}/runs/{run['id']}"
        wait_for(lambda: httpx.get(get, timeout=5).json()["resolved_at"], 90, why)
    return out, db, dict(run)


@pytest.mark.slow
def test_postmortem_of_a_real_alert(tmp_path: Path) -> None:
    """A drill fires a real alert and resolves it: the post-mortem's timeline has the alert,
    the run with its verdict and the resolution at their recorded times, in order; its
    attachments open; its first root-cause candidate names the injected fault."""
    out, db, run = fire_and_resolve(tmp_path)
    assert 0 == main(["postmortem", "latest", "-o", str(out), "--db", str(db)])
    (incident,) = list_incidents(out, db)
    bundle = out / "incidents" / incident.id
    timeline = json.loads((bundle / "incident.json").read_text())["timeline"]
    kinds = [e["kind"] for e in timeline]
    assert ["alert-fired", "alert-received", "run-started", "run-finished",
            "alert-resolved"] == kinds  # fmt: skip
    when = [dt.datetime.fromisoformat(e["at"]) for e in timeline]
    assert when == sorted(when)
    con = sqlite3.connect(db)
    starts_at, first_seen, resolved_at = con.execute(
        "SELECT starts_at, first_seen, resolved_at FROM episodes WHERE run_id=?", (run["id"],)
    ).fetchone()
    run_dir = con.execute("SELECT run_dir FROM runs WHERE id=?", (run["id"],)).fetchone()[0]
    con.close()
    record = json.loads((Path(run_dir) / "findings.json").read_text())
    epoch = dt.datetime.fromtimestamp
    assert [
        dt.datetime.fromisoformat(starts_at.replace("Z", "+00:00")),
        epoch(first_seen, dt.UTC),
        dt.datetime.fromisoformat(record["started_at"]),
        dt.datetime.fromisoformat(record["finished_at"]),
        epoch(resolved_at, dt.UTC),
    ] == when
    assert "CRITICAL" in timeline[3]["text"] and "AuraHighErrorRatio" in timeline[0]["text"]
    index = json.loads((bundle / "attachments" / "index.json").read_text())
    (entry,) = index
    assert nbformat.read(bundle / entry["files"]["notebook"], as_version=4).cells
    assert "/api/render" in (bundle / entry["files"]["report"]).read_text()
    first = json.loads((bundle / "incident.json").read_text())["root_cause_candidates"][0]
    for word in ("/api/render", "KeyError", "v2.4.1"):
        assert word in first["finding"]["summary"], first
    md = (bundle / "postmortem.md").read_text()
    assert "- **Status**: resolved" in md and "v2.4.1" in md
    assert AM_TOKEN not in "".join(p.read_text() for p in bundle.rglob("*.md"))
