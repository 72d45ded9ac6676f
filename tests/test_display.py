"""Finding cards, the machine-readable outputs, and reading them back from a notebook."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from aura_ops import display
from aura_ops.display import FINDINGS_MIME, format_finding
from aura_ops.findings import Evidence, Finding, Status
from aura_ops.report import extract_findings, render_report


def test_cards_escape_hostile_text() -> None:
    """Log lines and labels are data: HTML in them is escaped, never rendered."""
    f = Finding("logs.x", "<script>alert(1)</script>", Status.CRITICAL, "<img src=x onerror=1>",
                evidence=(Evidence.text("<b>line</b>", "lines"),))
    html = format_finding(f)
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;line&lt;/b&gt;" in html


def test_card_shows_observed_expected_query_and_reproduce() -> None:
    """A card carries status, summary, observed vs expected, the query and the reproduce call."""
    f = Finding("db.locks", "postgres/aura", Status.WARNING, "3 sessions blocked", observed=3,
                expected="0", source="SELECT 1", reproduce="check_blocking_locks('X')")
    html = format_finding(f)
    for part in ("WARNING", "3 sessions blocked", "Observed", "Expected", "SELECT 1",
                 "check_blocking_locks(&#x27;X&#x27;)"):
        assert part in html


def test_show_records_findings_in_the_output(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """show() emits HTML and the findings MIME bundle, and remembers them for conclude()."""
    shown: list[dict] = []
    monkeypatch.setattr(display, "_display", shown.append)
    display.reset()
    f = Finding("c", "s", Status.OK, "fine")
    display.show([f])
    assert shown[0][FINDINGS_MIME]["findings"][0]["summary"] == "fine"
    assert "text/html" in shown[0]
    v = display.conclude()
    assert v.status == Status.OK
    assert display.collected() == [f]


def test_recorded_reproduce_is_the_qualified_call(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """findings.json keeps ``reproduce`` as the card shows it: runnable in a runbook notebook."""
    shown: list[dict] = []
    monkeypatch.setattr(display, "_display", shown.append)
    display.reset()
    call = "check_endpoint('http://127.0.0.1:8080/health', timeout_s=5)"
    f = Finding("health.endpoint", "api", Status.OK, "up", reproduce=call)
    display.show([f])
    recorded = shown[0][FINDINGS_MIME]["findings"][0]["reproduce"]
    assert "health.check_endpoint('http://127.0.0.1:8080/health', timeout_s=5)" == recorded


def test_rerunning_a_cell_replaces_its_findings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same check and subject shown twice counts once (the latest)."""
    monkeypatch.setattr(display, "_display", lambda b: None)
    display.reset()
    display.show(Finding("c", "s", Status.CRITICAL, "bad"))
    display.show(Finding("c", "s", Status.OK, "fixed"))
    assert [f.summary for f in display.collected()] == ["fixed"]


def test_report_reads_findings_back_without_rerunning() -> None:
    """The report's findings come from the notebook's outputs, worst first, verdict on top."""
    def cell(*findings: Finding) -> nbformat.NotebookNode:
        c = new_code_cell("show(...)")
        c.outputs = [new_output("display_data", data={
            FINDINGS_MIME: {"findings": [f.to_dict() for f in findings]},
            "text/plain": "x"})]
        return c

    nb = new_notebook(cells=[cell(Finding("a", "1", Status.OK, "a fine")),
                             cell(Finding("b", "2", Status.CRITICAL, "b broken"))])
    found = extract_findings(nb)
    assert [f.summary for f in found] == ["a fine", "b broken"]
    from aura_ops.findings import roll_up

    record = {"runbook": "t", "findings": [f.to_dict() for f in found],
              "verdict": roll_up(found).to_dict()}
    html = render_report(nb, record)
    assert html.index("b broken") < html.index("a fine")
    assert html.index("CRITICAL") < html.index("Findings (2)")
