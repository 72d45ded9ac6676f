"""Findings as readable cards, and as machine-readable outputs inside the notebook itself.

``format_*`` functions are pure and return HTML (also used by the HTML report). ``show()`` is the
thin side-effecting wrapper for notebooks: it displays the cards and, in the same output,
the findings as ``application/vnd.aura-ops.findings+json``, which :mod:`aura_ops.report` reads
back from the executed notebook -- the report never re-runs a check. ``conclude()`` renders
the verdict of everything shown so far.

Colours are translucent over ``inherit`` text so cards read in JupyterLab's light and dark
themes alike; fonts and rules use JupyterLab's CSS variables, with fallbacks for the HTML report.
Everything from a finding (log lines, labels, URLs) is escaped: it is data, never markup.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aura_ops.findings import Evidence, Finding, Status, Verdict, roll_up

__all__ = [
    "FINDINGS_MIME",
    "VERDICT_MIME",
    "collected",
    "conclude",
    "format_evidence",
    "format_finding",
    "format_findings",
    "format_verdict",
    "reset",
    "show",
    "show_figure",
]

FINDINGS_MIME = "application/vnd.aura-ops.findings+json"
#: Next steps: ``{finding summary: what to do}`` or ``[[summary, what to do], ...]``.
Steps = Mapping[str, str] | Sequence[Sequence[str]]
VERDICT_MIME = "application/vnd.aura-ops.verdict+json"

COLOURS = {
    Status.OK: "#2e9e4f",
    Status.INFO: "#3b7dd8",
    Status.UNKNOWN: "#8a8f98",
    Status.WARNING: "#e0a100",
    Status.CRITICAL: "#d93025",
}

# findings shown in this kernel, keyed by (check, subject) so re-running a cell replaces them
_SHOWN: dict[tuple[str, str], Finding] = {}

_esc = html.escape
_MONO = "font-family:var(--jp-code-font-family,monospace);font-size:11.5px"
_RULE = "var(--jp-border-color2,rgba(127,127,127,.35))"
# badge text: dark on the light yellow, white on the others (contrast in both themes)
_BADGE_TEXT = {Status.WARNING: "#1b1b1b"}


def _badge(status: Status) -> str:
    return (
        f'<span style="background:{COLOURS[status]};color:{_BADGE_TEXT.get(status, "#fff")};'
        f"border-radius:3px;padding:1px 7px;font-size:11px;font-weight:700;"
        f'letter-spacing:.04em;white-space:nowrap">{status.name}</span>'
    )


def _value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return _esc(f"{v:.4g}")
    if isinstance(v, (dict, list)):
        return f"<code>{_esc(json.dumps(v, default=str)[:300])}</code>"
    return _esc(str(v))


def _cell(v: Any, align: str) -> str:
    return f'<td style="text-align:{align};padding:2px 8px;vertical-align:top">{_value(v)}</td>'


def _reproduce(f: Finding) -> str:
    """The reproduce call as a runbook notebook runs it (:func:`aura_ops.lab.reproduce_call`)."""
    try:
        from aura_ops.lab import reproduce_call

        return reproduce_call(f)
    except Exception:  # rendering never fails on a reproduce string it cannot qualify
        return f.reproduce


def _recorded(f: Finding) -> dict[str, Any]:
    """The finding as findings.json keeps it: ``reproduce`` as the card shows it, qualified,
    so it can be pasted into a notebook as it is."""
    out = f.to_dict()
    out["reproduce"] = _reproduce(f)
    return out


def format_evidence(ev: Evidence) -> str:
    """One piece of evidence as HTML (tables truncated with a count)."""
    title = f'<div style="font-weight:600;margin:6px 0 2px">{_esc(ev.title)}</div>'
    note = f'<div style="opacity:.7;font-size:11px">{_esc(ev.note)}</div>' if ev.note else ""
    if ev.kind == "table":
        data = ev.data or {}
        cols = data.get("columns", [])
        rows = data.get("rows", [])
        # JupyterLab right-aligns every cell: numbers right, text left, per column
        aligns = ["right" if _numeric(rows, i) else "left" for i in range(len(cols))]
        head = "".join(
            f'<th style="text-align:{a};padding:2px 8px;border-bottom:1px solid {_RULE}">'
            f"{_esc(c)}</th>"
            for a, c in zip(aligns, cols, strict=False)
        )
        body = "".join(
            "<tr>" + "".join(_cell(v, a) for a, v in zip(aligns, row, strict=False)) + "</tr>"
            for row in rows
        )
        shown, total = len(rows), data.get("total_rows", 0)
        more = (
            f'<div style="opacity:.7;font-size:11px">showing {shown} of {total} rows</div>'
            if total > shown
            else ""
        )
        return (
            f'{title}<div style="overflow-x:auto"><table style="border-collapse:collapse;'
            f'font-size:12px;margin:0"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            f"{more}{note}"
        )
    if ev.kind == "image":
        return (
            f'{title}<img alt="{_esc(ev.title)}" style="max-width:100%" '
            f'src="data:image/png;base64,{_esc(str(ev.data))}"/>{note}'
        )
    text = ev.data if ev.kind == "text" else json.dumps(ev.data, indent=2, default=str)
    return (
        f'{title}<pre style="white-space:pre-wrap;{_MONO};max-height:320px;'
        f'overflow:auto;margin:0;padding:4px 6px;background:rgba(127,127,127,.08)">'
        f"{_esc(str(text))}</pre>{note}"
    )


def _numeric(rows: list[Any], i: int) -> bool:
    """Whether column ``i`` holds numbers (ignoring empty cells)."""
    values = [r[i] for r in rows if i < len(r) and r[i] is not None]
    return bool(values) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )


def format_finding(f: Finding, *, open_evidence: bool = False) -> str:
    """One finding as a card: status, summary, observed vs expected, hint, source, evidence."""
    colour = COLOURS[f.status]
    rows = []
    pairs = (("Observed", f.observed), ("Expected", f.expected))
    seen = [f"<b>{k}</b> {_value(v)}" for k, v in pairs if v is not None]
    if seen:
        rows.append(" &nbsp;·&nbsp; ".join(seen))
    if f.hint:
        rows.append(f"<b>Next</b> {_esc(f.hint)}")
    meta = "".join(f'<div style="margin-top:3px">{r}</div>' for r in rows)
    src = (
        (
            f'<details style="margin-top:4px"><summary style="cursor:pointer;opacity:.8">Source '
            f'</summary><pre style="white-space:pre-wrap;{_MONO};margin:2px 0">'
            f"{_esc(f.source)}</pre></details>"
        )
        if f.source
        else ""
    )
    rep = (
        (
            f'<div style="margin-top:3px;font-size:11.5px"><span style="opacity:.8">Reproduce'
            f'</span> <code style="{_MONO};user-select:all;word-break:break-all">'
            f"{_esc(_reproduce(f))}</code></div>"
        )
        if f.reproduce
        else ""
    )
    ev = ""
    if f.evidence:
        inner = "".join(format_evidence(e) for e in f.evidence)
        ev = (
            f'<details{" open" if open_evidence else ""} style="margin-top:4px"><summary '
            f'style="cursor:pointer;opacity:.8">Evidence ({len(f.evidence)})</summary>'
            f"{inner}</details>"
        )
    return (
        f'<div class="aura-finding" style="border-left:5px solid {colour};'
        f"background:{colour}14;padding:8px 12px;margin:6px 0;border-radius:3px;"
        f'color:inherit;font-size:13px;line-height:1.4">'
        f"<div>{_badge(f.status)} <b>{_esc(f.summary)}</b></div>"
        f'<div style="opacity:.75;font-size:11.5px;margin-top:2px">{_esc(f.check)} · '
        f"{_esc(f.subject)}</div>{meta}{src}{rep}{ev}</div>"
    )


def format_findings(findings: Iterable[Finding]) -> str:
    """Cards for several findings, in the order given."""
    return "".join(format_finding(f) for f in findings)


def format_verdict(
    verdict: Verdict, *, title: str = "Verdict", next_steps: Steps | None = None
) -> str:
    """The verdict banner: worst status, headline, counts, top findings, next steps."""
    colour = COLOURS[verdict.status]
    counts = " · ".join(f"{n} {k}" for k, n in verdict.counts.items() if n)
    top = "".join(f"<li>{_badge(f.status)} {_esc(f.summary)}</li>" for f in verdict.top)
    steps = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in step_pairs(next_steps))
    return (
        f'<div class="aura-verdict" style="border:2px solid {colour};background:{colour}1f;'
        f'padding:10px 14px;border-radius:4px;color:inherit;margin:8px 0">'
        f'<div style="font-size:12px;opacity:.8;text-transform:uppercase;letter-spacing:.06em">'
        f"{_esc(title)}</div>"
        f'<div style="font-size:20px;font-weight:700;margin:2px 0">{_badge(verdict.status)} '
        f"{_esc(verdict.headline)}</div>"
        f'<div style="font-size:12px;opacity:.8">{_esc(counts)}</div>'
        + (f'<ul style="margin:6px 0 0 18px;padding:0">{top}</ul>' if top else "")
        + (
            f'<div style="margin-top:6px"><b>Next steps</b><ul style="margin:2px 0 0 18px;'
            f'padding:0">{steps}</ul></div>'
            if steps
            else ""
        )
        + "</div>"
    )


def step_pairs(steps: Steps | None) -> list[list[str]]:
    """Next steps as ``[[summary, step], ...]``, dropping repeated steps."""
    items = steps.items() if isinstance(steps, Mapping) else (steps or [])
    out: list[list[str]] = []
    for summary, step in items:
        if step not in (s for _, s in out):
            out.append([str(summary), str(step)])
    return out


def _display(bundle: dict[str, Any]) -> None:
    from IPython.display import display

    display(bundle, raw=True)


def show(findings: Finding | Iterable[Finding]) -> None:
    """Render findings as cards and record them in the notebook (see module docstring)."""
    items = [findings] if isinstance(findings, Finding) else list(findings)
    for f in items:
        _SHOWN[(f.check, f.subject)] = f
    text = "\n".join(f"[{f.status.name}] {f.summary}" for f in items)
    _display(
        {
            "text/html": format_findings(items),
            "text/plain": text or "(no findings)",
            FINDINGS_MIME: {"schema": 1, "findings": [_recorded(f) for f in items]},
        }
    )


def show_figure(fig: Any, *, title: str = "") -> None:
    """Display a matplotlib Figure as an inline PNG (and close it, freeing memory)."""
    ev = Evidence.image(fig, title or "figure")
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)
    except Exception:
        pass
    _display({"image/png": ev.data, "text/plain": title or "figure"})


def collected() -> list[Finding]:
    """Every finding shown in this kernel so far (latest per check and subject)."""
    return list(_SHOWN.values())


def reset() -> None:
    """Forget the findings shown so far (start of a run)."""
    _SHOWN.clear()


def conclude(*, title: str = "Verdict", next_steps: Steps | None = None, top_n: int = 3) -> Verdict:
    """Roll up everything shown so far, render the verdict banner and record it."""
    verdict = roll_up(collected(), top_n=top_n)
    # by default, the hints of the findings that decide the verdict, in their order. Kept as
    # a list of pairs: notebooks are saved with sorted keys, which would reorder a dict.
    steps = step_pairs(next_steps) or [
        [f.summary, f.hint] for f in verdict.top if f.hint and f.status >= Status.WARNING
    ]
    _display(
        {
            "text/html": format_verdict(verdict, title=title, next_steps=steps),
            "text/plain": f"{verdict.status.name}: {verdict.headline}",
            VERDICT_MIME: {"schema": 1, **verdict.to_dict(), "next_steps": steps},
        }
    )
    return verdict


def png_data_uri(png_b64: str) -> str:
    """``data:`` URI of a base64 PNG (validated as base64)."""
    base64.b64decode(png_b64, validate=True)
    return f"data:image/png;base64,{png_b64}"
