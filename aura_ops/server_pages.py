"""The run history of ``aura-ops serve``: ``GET /runs``, ``/runs/{id}``, ``/runs/{id}/report``.

:func:`history_routes` gives the handlers; :func:`render_runs` is pure: the JSON that
``GET /runs`` returns, as one HTML page. Every value shown comes from an alert (labels are
attacker-controlled text) and is escaped. A report is served only for a run the store knows,
from its recorded directory, and only when that lies inside the output root: no path from the
request ever reaches the filesystem.

Reading the history and the reports can require a token: when ``history.token_env`` in the
routes file names a set environment variable, ``GET /runs*`` needs ``Authorization: Bearer
<token>`` or HTTP basic auth with the token as password (so a browser can open the link in a
page); without it they are open to whoever can reach the (loopback by default) address.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import os
from collections.abc import Callable, Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from aura_ops.alert_routes import RouteTable

if TYPE_CHECKING:
    from aura_ops.server import AlertService

__all__ = [
    "authorized_reader",
    "error_response",
    "format_duration",
    "history_routes",
    "public_run",
    "render_runs",
]
_REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}

_COLOURS = {
    "OK": "#2e7d32",
    "INFO": "#1565c0",
    "UNKNOWN": "#616161",
    "WARNING": "#ef6c00",
    "CRITICAL": "#c62828",
}
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}.badge{color:#fff;border-radius:3px;padding:0 .35rem;font-weight:600}
.muted{color:#777}code{font-size:.85rem}
"""


def error_response(status: int, message: str) -> JSONResponse:
    """``{"error": message}`` with ``status`` (and ``WWW-Authenticate`` on a 401)."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def public_run(run: Mapping[str, Any], public_url: str = "") -> dict[str, Any]:
    """A run as the API shows it: no filesystem path, a report URL instead."""
    out = {k: v for k, v in run.items() if k != "run_dir"}
    base = public_url.rstrip("/")
    out["report_url"] = f"{base}/runs/{run['id']}/report" if run.get("run_dir") else None
    return out


def _report_path(run: Mapping[str, Any] | None, output_root: Path | None) -> Path | None:
    """``report.html`` of a known run, only if it lies inside the output root."""
    if run is None or not run.get("run_dir") or output_root is None:
        return None
    path = (Path(run["run_dir"]) / "report.html").resolve()
    if not path.is_relative_to(Path(output_root).resolve()):
        return None
    return path if path.is_file() else None


def history_routes(service: AlertService) -> list[Route]:
    """The GET routes of the history, each behind :func:`authorized_reader`."""
    store, opts = service.store, service.options

    def runs(request: Request) -> Response:
        try:
            limit = max(1, min(int(request.query_params.get("limit", "100")), 1000))
        except ValueError:
            return error_response(400, "limit must be an integer")
        data = {
            "runs": [public_run(r, opts.public_url) for r in store.list_runs(limit=limit)],
            "not_run": store.list_unrun(limit=limit),
            "stats": store.stats(),
        }
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(render_runs(data))
        return JSONResponse(data)

    def one_run(request: Request) -> Response:
        run = store.get_run(int(request.path_params["run_id"]))
        if run is None:
            return error_response(404, "no such run")
        return JSONResponse(public_run(run, opts.public_url))

    def report(request: Request) -> Response:
        path = _report_path(store.get_run(int(request.path_params["run_id"])), opts.output_root)
        if path is None:
            return error_response(404, "no report for this run (yet)")
        return FileResponse(path, media_type="text/html", headers=_REPORT_HEADERS)

    def guarded(func: Callable[[Request], Response]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            denied = authorized_reader(request, service.routes, service.environ)
            if denied is not None:
                return denied
            return await anyio.to_thread.run_sync(func, request)

        return handle

    return [
        Route("/runs", guarded(runs), methods=["GET"]),
        Route("/runs/{run_id:int}", guarded(one_run), methods=["GET"]),
        Route("/runs/{run_id:int}/report", guarded(report), methods=["GET"]),
    ]


def authorized_reader(
    request: Request, routes: RouteTable, environ: Mapping[str, str] | None = None
) -> JSONResponse | None:
    """None when the history may be read, else a 401 answer."""
    env_name = str(routes.options.get("history", {}).get("token_env", "") or "")
    token = (os.environ if environ is None else environ).get(env_name, "") if env_name else ""
    if not token:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    given = ""
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip()).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            given = ""
    if given and hmac.compare_digest(given.encode(), token.encode()):
        return None
    return JSONResponse(
        {"error": "the run history needs the history token"},
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="aura-ops"'},
    )


def format_duration(seconds: float | None) -> str:
    """``95.2`` → ``1 min 35 s``; None → ``''``."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _when(epoch: float | None) -> str:
    if not epoch:
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _badge(status: str | None) -> str:
    if not status:
        return ""
    colour = _COLOURS.get(status, "#616161")
    return f'<span class="badge" style="background:{colour}">{escape(status)}</span>'


def _labels(labels: Any) -> str:
    if not isinstance(labels, Mapping):
        return ""
    shown = [f"{k}={v}" for k, v in labels.items() if k != "alertname"][:6]
    return escape(", ".join(shown))


def _run_row(run: Mapping[str, Any]) -> str:
    report = f'<a href="/runs/{int(run["id"])}/report">report</a>' if run.get("report_url") else ""
    state = escape(str(run.get("state", "")))
    if run.get("note"):
        state += f'<br><span class="muted">{escape(str(run["note"]))}</span>'
    extra = []
    if int(run.get("alerts") or 1) > 1:
        extra.append(f"{int(run['alerts'])} alerts")
    if run.get("repeats"):
        extra.append(f"{int(run['repeats'])} repeats")
    if run.get("resolved_at"):
        extra.append(f"resolved {_when(run['resolved_at'])}")
    outcome = escape(str(run.get("headline") or run.get("error") or ""))
    return (
        f"<tr><td>{int(run['id'])}</td><td>{_when(run.get('created_at'))}</td>"
        f"<td><b>{escape(str(run.get('alertname') or ''))}</b> "
        f'<span class="muted">{escape(str(run.get("source", "")))}</span><br>'
        f"<code>{_labels(run.get('labels'))}</code></td>"
        f"<td>{escape(str(run.get('runbook', '')))}<br>"
        f'<span class="muted">{escape(str(run.get("environment") or ""))}</span></td>'
        f"<td>{state}</td><td>{_badge(run.get('verdict'))} {outcome}</td>"
        f"<td>{format_duration(run.get('duration_s'))}</td>"
        f"<td>{escape('; '.join(extra))}</td><td>{report}</td></tr>"
    )


def _unrun_row(item: Mapping[str, Any]) -> str:
    when = item.get("last_seen") or item.get("received_at")
    what = item.get("alertname") or f"HTTP {item.get('http_status', '')}"
    return (
        f"<tr><td>{_when(when)}</td><td>{escape(str(item.get('source', '')))}</td>"
        f"<td>{escape(str(what))}</td><td>{escape(str(item.get('outcome', '')))}</td>"
        f"<td>{escape(str(item.get('reason') or ''))}</td></tr>"
    )


def render_runs(data: Mapping[str, Any]) -> str:
    """The ``GET /runs`` page: runs (newest first), then alerts that started no run."""
    runs = "".join(_run_row(r) for r in data.get("runs", ()))
    unrun = "".join(_unrun_row(u) for u in data.get("not_run", ()))
    stats = escape(json.dumps(data.get("stats", {})))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>aura-ops runs</title>
<meta http-equiv="refresh" content="30"><style>{_STYLE}</style></head><body>
<h1>aura-ops: alert-triggered runs</h1>
<p class="muted">{stats}</p>
<table><thead><tr><th>#</th><th>created (UTC)</th><th>alert</th><th>runbook</th>
<th>state</th><th>verdict</th><th>duration</th><th>alerts</th><th></th></tr></thead>
<tbody>{runs or '<tr><td colspan="9" class="muted">no runs yet</td></tr>'}</tbody></table>
<h2>Alerts that started no run</h2>
<table><thead><tr><th>when (UTC)</th><th>source</th><th>alert</th><th>outcome</th>
<th>why</th></tr></thead>
<tbody>{unrun or '<tr><td colspan="5" class="muted">none</td></tr>'}</tbody></table>
</body></html>"""
