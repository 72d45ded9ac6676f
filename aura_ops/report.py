"""Findings back out of an executed notebook, and the HTML evidence report.

The report never re-runs a check: it reads the ``application/vnd.aura-ops.findings+json`` and
``...verdict+json`` outputs that :func:`aura_ops.display.show` and ``conclude`` recorded in the
notebook. Layout: verdict first, then every finding (worst first) with its evidence and the
query that produced it, then the runbook's narrative as executed -- markdown and outputs,
code hidden.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Mapping
from typing import Any

import nbformat

from aura_ops.display import (
    COLOURS,
    FINDINGS_MIME,
    VERDICT_MIME,
    format_finding,
    format_verdict,
)
from aura_ops.findings import Finding, Status, Verdict, rank, roll_up

__all__ = ["extract_findings", "extract_verdict", "render_report"]

_esc = html.escape


def extract_findings(nb: nbformat.NotebookNode) -> list[Finding]:
    """Every finding recorded in the notebook, latest per (check, subject), in notebook order."""
    found: dict[tuple[str, str], Finding] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            payload = out.get("data", {}).get(FINDINGS_MIME)
            if isinstance(payload, str):
                payload = json.loads(payload)
            for d in (payload or {}).get("findings", []):
                f = Finding.from_dict(d)
                found.pop((f.check, f.subject), None)
                found[(f.check, f.subject)] = f
    return list(found.values())


def extract_verdict(nb: nbformat.NotebookNode) -> dict[str, Any] | None:
    """The last verdict recorded by ``conclude()`` (headline, next steps), if any."""
    verdict = None
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            payload = out.get("data", {}).get(VERDICT_MIME)
            if payload:
                verdict = json.loads(payload) if isinstance(payload, str) else dict(payload)
    return verdict


def _markdown(text: str) -> str:
    from nbconvert.filters.markdown import markdown2html_mistune

    return str(markdown2html_mistune(text))


def _outputs_html(cell: Mapping[str, Any]) -> str:
    parts = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        data = out.get("data", {})
        if FINDINGS_MIME in data or VERDICT_MIME in data:
            continue  # already shown in the findings section
        if "image/png" in data:
            parts.append(
                f'<img class="plot" alt="plot" src="data:image/png;base64,'
                f'{_esc(str(data["image/png"]).strip())}"/>'
            )
        elif "text/html" in data and "<table" in str(data["text/html"]):
            parts.append(f'<div class="table">{data["text/html"]}</div>')  # pandas escapes cells
        elif "text/plain" in data:
            parts.append(f"<pre>{_esc(str(data['text/plain']))}</pre>")
        elif kind == "stream":
            parts.append(f"<pre>{_esc(str(out.get('text', '')))}</pre>")
        elif kind == "error":
            parts.append(
                f'<pre class="error">{_esc(out.get("ename", ""))}: '
                f"{_esc(out.get('evalue', ''))}</pre>"
            )
    return "".join(parts)


def _narrative(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "parameters" in tags or "injected-parameters" in tags:
            continue
        if cell.cell_type == "markdown":
            if "papermill-error-cell-tag" in tags:
                continue
            parts.append(f'<div class="md">{_markdown(cell.source)}</div>')
        elif cell.cell_type == "code":
            if "skip-execution" in tags:
                parts.append(
                    f'<details class="skipped"><summary>Mitigation (not executed: '
                    f"dry-run, needs approval)</summary><pre>{_esc(cell.source)}</pre>"
                    f"</details>"
                )
                continue
            out = _outputs_html(cell)
            if out:
                parts.append(f'<div class="out">{out}</div>')
    return "".join(parts)


_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:1100px;
margin:24px auto;padding:0 20px;color:#1f2328;line-height:1.45}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;border-bottom:1px solid #d0d7de;
padding-bottom:4px;margin-top:28px} .meta{font-size:12.5px;color:#57606a}
.meta td{padding:1px 12px 1px 0;vertical-align:top} pre{background:#f6f8fa;padding:8px;
border-radius:4px;overflow-x:auto;font-size:12px} .plot{max-width:100%;margin:6px 0}
.md h1{font-size:19px} .md h2{font-size:16px} .md h3{font-size:14.5px}
.table table{border-collapse:collapse;font-size:12px} .table td,.table th{padding:2px 8px;
border-bottom:1px solid #eaeef2} pre.error{background:#fdecea;color:#a4161a}
details.skipped{margin:6px 0;font-size:12.5px} .counts span{margin-right:10px}
"""


def _severity_text(severity: Mapping[str, Any] | None) -> str:
    if not severity:
        return "-"
    return f"{severity.get('level')} / {severity.get('priority')} ({severity.get('reason')})"


def render_report(nb: nbformat.NotebookNode, record: Mapping[str, Any]) -> str:
    """The whole report as one self-contained HTML page (no external assets)."""
    findings = [Finding.from_dict(d) for d in record.get("findings", [])]
    v = record.get("verdict", {})
    verdict = Verdict(
        Status.parse(v.get("status", "UNKNOWN")),
        v.get("counts", {}),
        tuple(Finding.from_dict(d) for d in v.get("top", [])),
        v.get("headline", ""),
    )
    if not v:
        verdict = roll_up(findings)
    title = record.get("title") or record.get("runbook", "runbook")
    window = record.get("window", {})
    params = record.get("parameters", {})
    def when(value: Any) -> str:
        try:
            return dt.datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S UTC")
        except ValueError:
            return str(value or "?")

    meta_rows = [
        ("Runbook", record.get("runbook", "")),
        ("Run", record.get("run_id", "")),
        ("Environment", record.get("environment") or "-"),
        ("Trigger", record.get("trigger", "")),
        ("Window", f"{when(window.get('start'))} → {when(window.get('end'))}"),
        ("Started", when(record.get("started_at"))),
        ("Duration", f"{record.get('duration_s', 0):.1f} s"),
        ("Execution", record.get("execution", {}).get("status", "")),
        ("Severity", _severity_text(record.get("severity"))),
    ]
    meta = "".join(
        f"<tr><td><b>{_esc(k)}</b></td><td>{_esc(str(val))}</td></tr>" for k, val in meta_rows
    )
    param_rows = "".join(
        f"<tr><td>{_esc(k)}</td><td><code>{_esc(json.dumps(val))}</code></td></tr>"
        for k, val in params.items()
    )
    cards = "".join(format_finding(f) for f in rank(findings)) or "<p>No findings recorded.</p>"
    colour = COLOURS[verdict.status]
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(verdict.status.name)} · {_esc(str(title))}</title>
<style>{_CSS}</style></head><body>
<div style="border-top:6px solid {colour};padding-top:10px">
<h1>{_esc(str(title))}</h1>
<table class="meta">{meta}</table></div>
{format_verdict(verdict, next_steps=record.get("next_steps") or [])}
<h2>Findings ({len(findings)})</h2>{cards}
<h2>Runbook as executed</h2>{_narrative(nb)}
<h2>Parameters</h2><table class="meta">{param_rows}</table>
<p class="meta">Generated by aura-ops {_esc(str(record.get("versions", {}).get("aura_ops", "")))}
at {generated}. Code cells are hidden; the executed notebook is beside this report.</p>
</body></html>"""
