"""The ``aura-ops`` command line.

Exit codes: ``run`` and ``drill`` follow the monitoring-plugin convention for the verdict
(0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN); a drill whose verdict was wrong exits 1.
Bad input (unknown runbook, malformed parameter, unknown environment) exits 64 with a one-line
error, so it can never be mistaken for a verdict.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from aura_ops.errors import AuraOpsError, ConfigError
from aura_ops.findings import Status

EXIT_USAGE = 64
EXIT_INTERNAL = 70

_COLOURS = {
    Status.OK: "32",
    Status.INFO: "34",
    Status.UNKNOWN: "90",
    Status.WARNING: "33",
    Status.CRITICAL: "31",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"aura-ops: error: {message}\n")


def _paint(status: Status, text: str) -> str:
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return text
    return f"\x1b[{_COLOURS[status]};1m{text}\x1b[0m"


def _parse_params(items: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"malformed parameter {item!r}", hint="use -p NAME=VALUE")
        params[key.strip()] = value
    return params


def _print_run(result: object, *, top: int = 5) -> None:
    from aura_ops.runner import RunResult

    assert isinstance(result, RunResult)
    v = result.verdict
    print(f"{_paint(v.status, v.status.name)}  {v.headline}")
    from aura_ops.findings import rank

    ranked = rank(result.findings)
    shown = [f for f in ranked if f.status >= Status.UNKNOWN][:top] or ranked[:top]
    for f in shown:
        print(f"  {_paint(f.status, f'{f.status.name:<8}')} {f.summary}")
    severity = result.record.get("severity")
    if severity and v.status >= Status.WARNING:
        print(f"severity: {severity['level']} / {severity['priority']} ({severity['reason']})")
    print(f"report: {result.report}")


def cmd_list(args: argparse.Namespace) -> int:
    from aura_ops.runner import list_runbooks

    books = list_runbooks()
    for book in books:
        print(f"{book.name:<22} {book.summary or book.title}")
        if args.verbose:
            for name, spec in book.parameters.items():
                default = spec.get("default")
                helptext = spec.get("help") or ""
                print(f"    -p {name}={default}  ({spec.get('inferred_type_name')}) {helptext}")
    if not books:
        print("no runbooks found (looked in notebooks/)", file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from aura_ops.runner import run_runbook

    if args.incident:
        from aura_ops.incidents import validate_incident_id

        validate_incident_id(args.incident)
    result = run_runbook(
        args.runbook,
        env=args.env,
        params=_parse_params(args.param),
        output_root=args.output,
        timeout_s=args.timeout,
        progress=not args.quiet,
        incident=args.incident,
    )
    _print_run(result)
    return result.exit_code


def cmd_drill(args: argparse.Namespace) -> int:
    from aura_ops.drill import run_drill

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if args.all:
        return _drill_all(args, say)
    if not args.runbook:
        raise ConfigError("name a runbook, or use --all")
    fault: str | None = None if args.no_fault else (args.fault or "")
    result = run_drill(
        args.runbook, fault=fault, output_root=args.output, say=say, progress=not args.quiet
    )
    _print_run(result.run)
    if result.fault is None:
        expectation = "OK (no fault injected)"
    else:
        expectation = (
            f"WARNING or CRITICAL naming {', '.join(result.fault.expect)} "
            f"(fault {result.fault.name}: {result.fault.summary})"
        )
    verdict = "PASSED" if result.passed else "FAILED"
    print(f"drill {verdict} in {result.seconds:.1f} s: expected {expectation}")
    if result.missing:
        print(f"  the verdict did not name: {', '.join(result.missing)}")
    return 0 if result.passed else 1


def _drill_all(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """Every fault of the catalogue with its runbook, and every runbook once without a fault."""
    from aura_ops.drill import run_drill
    from aura_ops.sandbox import FAULTS

    rows: list[tuple[str, str, str, str, str, str]] = []
    failures = 0
    runbooks = list(dict.fromkeys(f.runbook for f in FAULTS.values()))
    for runbook in runbooks:
        clean = run_drill(runbook, fault=None, output_root=args.output, say=say)
        failures += not clean.passed
        for fault in (f for f in FAULTS.values() if f.runbook == runbook):
            broken = run_drill(runbook, fault=fault.name, output_root=args.output, say=say)
            failures += not broken.passed
            named = ", ".join(broken.named) + (
                f" (missing: {', '.join(broken.missing)})" if broken.missing else "")
            rows.append((runbook, fault.name, broken.status.name, clean.status.name, named,
                         f"{broken.seconds + clean.seconds:.0f}"))
    head = ("runbook", "fault", "with fault", "without", "verdict named", "seconds")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows)} drills, {failures} failed")
    return 1 if failures else 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from aura_ops.sandbox import Sandbox

    with Sandbox() as sb:
        for name in args.fault:
            sb.inject(name)
        if args.traffic:
            sb.start_traffic(rps=args.traffic)
        print(f"sandbox running at {sb.base_url} (Ctrl-C to stop)")
        for key, value in sb.environment().items():
            print(f"  -p {key}={value}")
        print(f"  export {sb.environment()['dsn_env']}='{sb.dsn}'")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping sandbox")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    from aura_ops.lab import run_lab

    return run_lab(
        args.runbook,
        env=args.env,
        sandbox=args.sandbox,
        faults=args.fault,
        port=args.port,
        open_browser=not args.no_browser,
        traffic_rps=args.traffic,
    )


def cmd_open(args: argparse.Namespace) -> int:
    from aura_ops.lab import open_run

    return open_run(
        args.run,
        output_root=args.output,
        port=args.port,
        open_browser=not args.no_browser,
        overwrite=args.fresh,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from aura_ops.server import ServeOptions, serve

    options = ServeOptions(
        workers=args.workers,
        run_timeout_s=args.run_timeout,
        max_body_bytes=args.max_body,
        retention_days=args.retention_days,
        retention_runs=args.retention_runs,
        public_url=args.public_url,
        warm_kernels=args.warm_kernels,
    )
    return serve(
        host=args.host,
        port=args.port,
        routes_path=args.routes,
        db_path=args.db,
        output_root=args.output,
        options=options,
        storm_window_s=args.storm_window,
        max_queue=args.max_queue,
        log_level=args.log_level,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aura-ops",
        description="Executable runbooks for on-call engineers: run a runbook notebook against "
        "your systems and get a verdict with its evidence.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              aura-ops drill high-error-rate          break the sandbox, run the runbook, judge it
              aura-ops run high-error-rate --env prod -p lookback_minutes=30
              aura-ops list -v                        runbooks and their parameters

            exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 64 bad input"""),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "list",
        help="list runbooks with a one-line description",
        description="List runbooks (read from notebooks/).",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also list each parameter")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "run",
        help="run a runbook and write its evidence report",
        description="Execute a runbook with papermill. Parameters: the notebook's "
        "defaults, then --env, then -p. Writes outputs/<date>/<run>/ with "
        "notebook.ipynb, report.html and findings.json; exits with the verdict.",
    )
    p.add_argument("runbook", help="runbook name (see `aura-ops list`)")
    p.add_argument("--env", help="environment: parameters/environments/ENV.yaml")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a runbook parameter (repeatable)",
    )
    p.add_argument("-o", "--output", type=Path, help="output root (default: ./outputs)")
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="wall-clock limit for the whole run (default 600)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--incident",
        metavar="ID",
        help="the incident this run belongs to (see `aura-ops incidents`); recorded in "
        "findings.json so that `aura-ops postmortem ID` attaches it",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "drill",
        help="inject a fault into the sandbox and run its runbook",
        description="Start the built-in sandbox, inject the runbook's fault, "
        "drive traffic, run the runbook against it and check that the verdict "
        "names the cause. Exits 0 when the drill passed.",
    )
    p.add_argument("runbook", nargs="?", help="runbook name")
    p.add_argument("--all", action="store_true",
                   help="every fault of the catalogue, and every runbook without a fault: "
                   "prints one table")
    p.add_argument("--fault", help="fault to inject (default: the runbook's first)")
    p.add_argument("--no-fault", action="store_true", help="inject nothing: the verdict must be OK")
    p.add_argument("-o", "--output", type=Path, help="output root (default: ./outputs)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_drill)

    p = sub.add_parser(
        "sandbox",
        help="start the sandbox and keep it running",
        description="Start the sandbox service and PostgreSQL on loopback and "
        "print the parameters that point a runbook at it.",
    )
    p.add_argument("--fault", action="append", default=[], help="fault to inject (repeatable)")
    p.add_argument(
        "--traffic",
        type=float,
        default=0.0,
        metavar="RPS",
        help="drive background traffic at RPS requests per second",
    )
    p.set_defaults(func=cmd_sandbox)
    p = sub.add_parser(
        "lab",
        help="open the runbooks in JupyterLab, pointed at an environment or the sandbox",
        description="Start JupyterLab on notebooks/ (127.0.0.1, with a token) and print its "
        "URL. --env preselects an environment: a runbook's connect() uses it without edits. "
        "--sandbox also starts the sandbox with background traffic (and --fault injects one) "
        "and points the runbooks at it: a fire drill. Ctrl-C stops everything.",
    )
    p.add_argument("runbook", nargs="?", help="runbook to open (default: the fault's runbook)")
    p.add_argument("--env", help="environment to preselect: parameters/environments/ENV.yaml")
    p.add_argument("--sandbox", action="store_true", help="start the sandbox and point at it")
    p.add_argument(
        "--fault", action="append", default=[], help="with --sandbox: fault to inject (repeatable)"
    )
    p.add_argument(
        "--traffic",
        type=float,
        default=10.0,
        metavar="RPS",
        help="with --sandbox: background requests per second (default 10)",
    )
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL, open no browser")
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser(
        "open",
        help="open a finished run in JupyterLab as a working copy",
        description="Copy a run's executed notebook to outputs/worksheets/RUN.ipynb (the run "
        "directory is left untouched), pin the run's parameters and time window so that "
        "re-run cells look at the same window, and open it in JupyterLab. Ctrl-C stops it.",
    )
    p.add_argument("run", help="run id (e.g. 101523-high-error-rate-3f9c) or run directory")
    p.add_argument("-o", "--output", type=Path, help="output root (default: ./outputs)")
    p.add_argument("--fresh", action="store_true", help="replace an existing working copy")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL, open no browser")
    p.set_defaults(func=cmd_open)
    p = sub.add_parser(
        "serve",
        help="receive Alertmanager/Grafana/PagerDuty webhooks and run the matching runbook",
        description="Webhook receiver: POST /alertmanager, /grafana, /pagerduty; run history at "
        "GET /runs. Routes and the NAMES of the env vars holding the webhook secrets are in the "
        "routes file; deliveries, episodes and runs are kept in the SQLite database "
        "(see docs/alerting.md).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9095, help="port (default 9095)")
    p.add_argument("--routes", type=Path, help="routes file (default parameters/routes.yaml)")
    p.add_argument("--db", type=Path, help="SQLite database (default outputs/aura-ops.db)")
    p.add_argument("-o", "--output", type=Path, help="output root (default: ./outputs)")
    p.add_argument("--workers", type=int, default=2, help="runs at once (default 2)")
    p.add_argument(
        "--warm-kernels",
        type=int,
        metavar="N",
        help="kernels kept started with the library imported, so an alert's run starts in "
        "~0.1 s instead of ~3 s (default: $AURA_OPS_WARM_KERNELS, else one per worker; "
        "0: cold runs; each costs ~150 MiB while idle)",
    )
    p.add_argument(
        "--run-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="wall-clock limit per run (default 300)",
    )
    p.add_argument("--max-queue", type=int, default=100, help="queued runs before dropping")
    p.add_argument(
        "--storm-window",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="alerts of one group within this window share a run (default 300)",
    )
    p.add_argument(
        "--max-body",
        type=int,
        default=1024 * 1024,
        metavar="BYTES",
        help="largest delivery accepted (default 1 MiB)",
    )
    p.add_argument("--retention-days", type=float, default=30.0, help="keep runs this long")
    p.add_argument("--retention-runs", type=int, default=1000, help="keep at most this many")
    p.add_argument("--public-url", default="", help="base URL of report links in notifications")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_serve)
    _add_incident_parsers(sub)
    return parser


def cmd_incidents(args: argparse.Namespace) -> int:
    import json

    from aura_ops.config import project_root
    from aura_ops.incident_metrics import (
        format_incident_table,
        format_monthly_report,
        incident_metrics,
        resolve_period,
    )
    from aura_ops.incidents import list_incidents
    from aura_ops.postmortem_doc import write_incident_report

    since, until, label = resolve_period(args.month, args.since, args.until)
    found = list_incidents(args.output, args.db, since=since, until=until, gap_s=args.gap * 60)
    if args.report:
        metrics = incident_metrics(found, label=label)
        print(format_monthly_report(metrics))
        root = Path(args.output or project_root() / "outputs")
        name = args.month or ("all" if not label else f"{since or ''}_{until or ''}"[:60])
        dest = write_incident_report(metrics, root / "incidents" / "reports" / _safe(name))
        print(f"report: {dest} (and incident-report.html, incident-metrics.png beside it)")
    elif args.json:
        print(json.dumps([i.to_dict() for i in found], indent=2))
    elif found:
        print(format_incident_table(found))
    else:
        print("no incidents recorded in this period", file=sys.stderr)
    return 0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or "all"


def cmd_postmortem(args: argparse.Namespace) -> int:
    from aura_ops.incidents import find_incident, list_incidents
    from aura_ops.postmortem import root_cause_candidates, write_postmortem

    everything = list_incidents(args.output, args.db, gap_s=args.gap * 60)
    incident = find_incident(args.incident, incidents=everything)
    out = write_postmortem(
        incident,
        dest=args.dest,
        output_root=args.output,
        slo_target=args.slo,
        slo_window_days=args.slo_window_days,
        related=everything,
        force=args.force,
    )
    status = Status.parse(incident.verdict)
    print(
        f"{_paint(status, incident.id)}  {incident.severity or 'SEV-?'}  {incident.status}  "
        f"{len(incident.runs)} run(s): {incident.title}"
    )
    for cand in root_cause_candidates(incident, top_n=3):
        label = _paint(cand.finding.status, f"{cand.finding.status.name:<8}")
        print(f"  {label} {cand.finding.summary}")
    print(f"post-mortem: {out / 'postmortem.md'} (with postmortem.html, communications.md)")
    return 0


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o", "--output", type=Path, help="output root with the runs (default: ./outputs)"
    )
    p.add_argument(
        "--db", type=Path, help="aura-ops serve database (default: OUTPUT/aura-ops.db if present)"
    )
    p.add_argument(
        "--gap",
        type=float,
        default=30.0,
        metavar="MINUTES",
        help="alerts/runs of one group less than this apart are one incident (default 30)",
    )


def _add_incident_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "incidents",
        help="list incidents (runs grouped by alert and time), or report incident metrics",
        description="Incidents are grouped from the recorded runs: by alert group and time "
        "(aura-ops serve), or by `aura-ops run --incident ID`. Lists them with severity, start, "
        "end and status; --report prints seed 002's monthly report (counts by severity, MTTD, "
        "MTTR, top causes) and writes it as markdown, HTML and a plot (see docs/postmortem.md).",
    )
    _source_args(p)
    p.add_argument("--month", metavar="YYYY-MM", help="incidents that started in this month")
    p.add_argument("--since", metavar="DATE", help="incidents that started at or after DATE")
    p.add_argument("--until", metavar="DATE", help="incidents that started before DATE")
    p.add_argument("--report", action="store_true", help="print and write the metrics report")
    p.add_argument("--json", action="store_true", help="the list as JSON")
    p.set_defaults(func=cmd_incidents)
    p = sub.add_parser(
        "postmortem",
        help="write an incident's post-mortem bundle from its evidence",
        description="Write outputs/incidents/INCIDENT/: postmortem.md and .html (seed 002/004 "
        "template: summary, timeline, root-cause candidates, impact, sections to fill), "
        "communications.md (detected, update, resolved, escalation) and the incident's "
        "executed notebooks and reports, redacted (see docs/postmortem.md).",
    )
    p.add_argument("incident", help="incident id (see `aura-ops incidents`), or 'latest'")
    _source_args(p)
    p.add_argument("--dest", type=Path, help="bundle directory (default OUTPUT/incidents/ID)")
    p.add_argument(
        "--slo", type=float, default=0.999, help="availability SLO for the budget (default 0.999)"
    )
    p.add_argument(
        "--slo-window-days", type=float, default=30.0, help="SLO window in days (default 30)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing postmortem.md")
    p.set_defaults(func=cmd_postmortem)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except AuraOpsError as exc:
        print(f"aura-ops: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aura-ops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
