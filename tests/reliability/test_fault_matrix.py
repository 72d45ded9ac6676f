"""Fault matrix: every runbook, every data source it takes, five ways of failing.

For each runbook in ``notebooks/`` and each parameter that names a data source (a URL, a DSN's
env var, a log file, a directory, a command), the source is made to fail -- **down** (closed
port, missing path), **refusing** (HTTP 503, Kubernetes 403, Redis NOAUTH, a PostgreSQL
password refused, EACCES), **hanging** (accepts, never answers; a FIFO), **garbage** (an HTML
page where JSON, metrics or a protocol was expected; corrupt bytes) and **slow** (a healthy
answer held back longer than any timeout) -- and the runbook is run. Every case must:

- finish within the run's deadline (the notebook completes; no cell is killed) and write its
  report, notebook and findings.json;
- name the failing source in a finding that is UNKNOWN (CRITICAL "not answering" for a health
  endpoint) and says why; no finding about that source may be OK or INFO;
- never conclude OK; a slow source is abandoned by its client before the answer comes.

``make test`` runs a representative sample: one run per runbook in which *every* source fails
at once, each in a different way (rotated, from an offset fixed by the runbook's name), plus
the Prometheus URL on its own (set, it takes over from ``metrics_url``).
``AURA_OPS_FAULT_MATRIX=full`` runs every cell alone against the healthy sandbox (all other
sources working). ``AURA_OPS_MATRIX_OUT=DIR``
writes the results as JSON and as the Markdown table of ``docs/reliability.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import time
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest

from aura_ops.findings import Finding, Status
from aura_ops.runner import RunResult, run_runbook
from tests.conftest import IN_CI
from tests.reliability.faults import DELAY_S, FAILURES, Unavailable, make_fault, unsupported

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MODE = os.environ.get("AURA_OPS_FAULT_MATRIX", "sample").strip().lower()
WORKERS = int(os.environ.get("AURA_OPS_MATRIX_WORKERS", "2"))
DEADLINE_S = 150.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200 if MODE == "full" else 900)]

#: runbook parameter -> kind of data source (see tests/reliability/faults.py)
SOURCES: dict[str, str] = {
    "base_url": "http",
    "metrics_url": "http",
    "prometheus_url": "http",
    "provider_url": "http",
    "webhook_url": "http",
    "kube_url": "kube",
    "ws_url": "ws",
    "broker_url": "redis",
    "dsn_env": "postgres",
    "log_paths": "file",
    "worker_log_paths": "file",
    "db_log_paths": "file",
    "changes_path": "file",
    "backup_dir": "backup_dir",
    "data_dir": "dir",
    "nvidia_smi": "command",
}
#: parameters that look like sources but are not data a check reads
NOT_SOURCES: dict[str, str] = {
    "api_key_env": "a credential sent to provider_url (tests/reliability/test_secrets.py)",
    "process_pattern": "the service's own process: its absence is the finding, not a fault",
    "kube_context": "selects kubeconfig credentials when kube_url is empty",
    "ws_origin": "a header value",
    "allowed_origins": "configuration for a mitigation",
}
SOURCE_LIKE = re.compile(r"(_url|_urls|_path|_paths|_dir|_env|_dsn|_file|_host|_cmd)$|nvidia")
#: shorter timeouts and intervals where a runbook takes them (the defaults are <= 10 s)
FAST: dict[str, Any] = {
    "probe_timeout_s": 2,
    "timeout_s": 2,
    "endpoint_timeout_s": 2,
    "verify_timeout_s": 5,
    "scan_budget_s": 2,
    "interval_s": 1.0,
    "sample_count": 3,
    "sample_interval_s": 0.5,
}
#: checks that may say OK about a source answering garbage (or, for a directory, holding a
#: FIFO): they judge something the fault leaves intact, not the content
CONTENT_FREE: dict[str, str] = {
    "health.endpoint": "liveness is the status code: the server did answer 200",
    "backup.freshness": "the corrupt backup file is fresh: its age is judged, readability apart",
    "system.disk_usage": "statvfs of the directory: the file inside is not read",
}
#: (parameter, failure) pairs that are no failure for that source
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("webhook_url", "garbage"): "a webhook receiver's contract is its 2xx; its body is not read",
}
#: roll-ups that may stay OK while listing the source among those that "could not be read"
ROLLUPS = {"triage.next_runbook"}
#: cells that fail today because of a library gap (docs/reliability.md); the test xfails them
#: and fails as soon as the gap is fixed, so the entry is removed. "*" matches any runbook.
KNOWN_GAPS: dict[tuple[str, str, str], str] = {}
#: words a finding about a failing source uses to say why
REASONS: dict[str, str] = {
    "down": r"refused|not answering|unreachable|connect|not found|no such|does not exist|"
    r"missing|cannot|could not",
    "refusing": r"503|403|forbidden|denied|authenticat|refus|permission|unavailable|NOAUTH|"
    r"unhealthy|HTTP|not executable|cannot|could not|not understood",
    "hanging": r"timed? ?out|timeout|within|no answer|not answering|did not answer|"
    r"not a regular file|blocked|deadline|no backup",
    "garbage": r"pars|invalid|unexpected|JSON|HTML|garbage|decode|format|corrupt|not a|"
    r"unreadable|no .*events|could not|cannot|protocol|response|without|not understood|"
    r"HTTP \d{3}|malformed",
    "slow": r"timed? ?out|timeout|within|no answer|not answering|did not answer|deadline",
}


def _declared(path: Path) -> dict[str, Any]:
    return dict(papermill.inspect_notebook(str(path)))


def _code(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(
        c.source
        for c in nb.cells
        if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
    )


DECLARED = {p.stem: _declared(p) for p in NOTEBOOKS}
CODE = {p.stem: _code(p) for p in NOTEBOOKS}


def sources_of(runbook: str) -> list[str]:
    """The data-source parameters ``runbook`` declares and reads, in declaration order."""
    used = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", CODE[runbook]))
    return [p for p in DECLARED[runbook] if p in SOURCES and p in used]


@dataclasses.dataclass(frozen=True)
class Run:
    """One execution of a runbook with some of its sources failing."""

    runbook: str
    failing: tuple[tuple[str, str], ...]  # (parameter, failure)

    @property
    def key(self) -> str:
        return f"{self.runbook}:" + ",".join(f"{p}={f}" for p, f in self.failing)


def _supported(param: str, failure: str) -> bool:
    return not unsupported(SOURCES[param], failure) and (param, failure) not in NOT_APPLICABLE


def plan(mode: str = MODE) -> list[Run]:
    """The runs of the matrix: every cell alone (``full``) or the rotated sample."""
    runs: list[Run] = []
    for runbook in DECLARED:
        params = sources_of(runbook)
        if mode == "full":
            runs += [Run(runbook, ((p, f),)) for p in params for f in FAILURES if _supported(p, f)]
            continue
        # one run, every source failing, each a different way (rotated from an offset fixed
        # by the runbook's name, so adding a runbook changes no other's); Prometheus alone below
        i, failing = zlib.crc32(runbook.encode()), []
        for j, param in enumerate(p for p in params if p != "prometheus_url"):
            order = [FAILURES[(i + j + k) % len(FAILURES)] for k in range(len(FAILURES))]
            usable = [f for f in order if _supported(param, f)]
            fresh = [f for f in usable if f not in {u for _, u in failing}]
            failing.append((param, (fresh or usable)[0]))
        if failing:
            runs.append(Run(runbook, tuple(failing)))
    with_prom = [r for r in DECLARED if "prometheus_url" in DECLARED[r]]
    if mode != "full" and with_prom:
        runs.append(Run(with_prom[0], (("prometheus_url", "garbage"),)))
    return runs


ONLY = re.compile(os.environ.get("AURA_OPS_MATRIX_ONLY", ""))  # e.g. "^triage-|-slow$"
PLAN = [r for r in plan() if any(ONLY.search(f"{r.runbook}-{p}-{f}") for p, f in r.failing)]
CELLS = [(run, param, failure) for run in PLAN for param, failure in run.failing]


@dataclasses.dataclass
class CellResult:
    """What one failing source looked like in its run."""

    runbook: str
    param: str
    failure: str
    status: str  # worst status among the findings naming the source ("" if none)
    verdict: str
    seconds: float
    summaries: list[str]
    problems: list[str]
    skipped: str = ""
    #: slow sources: connections still open when the held-back answer came (a client with no
    #: timeout, or one that timed out without closing its socket) -- reported, not judged
    held_open: int = 0


def _text(f: Finding) -> str:
    """What a finding says it looked at (not ``reproduce``, which may list fallbacks too)."""
    return " ".join((f.subject, f.source, f.summary, str(f.observed or "")))


def judge(
    result: RunResult, param: str, failure: str, tokens: tuple[str, ...], server: Any, secs: float
) -> CellResult:
    """Hold one failing source of a finished run to the matrix's rules."""
    named_by = re.compile("|".join(re.escape(t) + r"(?![0-9])" for t in tokens))
    named = [f for f in result.findings if named_by.search(_text(f))]
    problems = []
    execution = result.record["execution"]
    if execution["status"] != "completed":
        problems.append(f"run {execution['status']}: {execution.get('error', '')}"[:300])
    missing = [n for n in ("report.html", "notebook.ipynb", "findings.json")
               if not (result.run_dir / n).is_file()]  # fmt: skip
    if missing:
        problems.append(f"missing outputs: {missing}")
    if secs >= DEADLINE_S:
        problems.append(f"took {secs:.0f} s, deadline {DEADLINE_S:.0f} s")
    if result.verdict.status == Status.OK:
        problems.append("verdict OK with a failing source")
    bad = [f for f in named if f.status >= Status.UNKNOWN]
    if not bad:
        problems.append(f"no UNKNOWN/CRITICAL finding names {param} ({tokens[0]})")
    for f in named:
        if f.status < Status.UNKNOWN and not _may_be_ok(f, param, failure):
            problems.append(f"{f.status.name} about a {failure} source: {f.check}: {f.summary}")
    reason = re.compile(REASONS[failure], re.IGNORECASE)
    for f in bad:
        if not reason.search(f"{f.summary} {f.observed or ''}"):
            problems.append(f"{f.check} does not say why: {f.summary!r}")
    worst = max((f.status for f in named), default=None)
    return CellResult(
        result.record["runbook"], param, failure, worst.name if worst is not None else "",
        result.verdict.status.name, round(secs, 1),
        [f"{f.status.name} {f.check}: {f.summary}"[:240] for f in named], problems,
        held_open=server.waited if server is not None else 0,
    )  # fmt: skip


def _may_be_ok(f: Finding, param: str, failure: str) -> bool:
    """An OK/INFO finding that names a failing source without lying about it."""
    if f.check in ROLLUPS:
        return "could not be read" in f.summary
    content_free = failure == "garbage" or (failure == "hanging" and SOURCES[param] != "file")
    return content_free and f.check in CONTENT_FREE


def _healthy(param: str, env: Mapping[str, Any]) -> str:
    """The healthy value a slow source proxies to."""
    if param == "prometheus_url":
        return str(env["base_url"])  # never reached: the delay outlasts the query timeout
    return str(env.get(param, ""))


def execute(run: Run, sandbox: Any, pg: Any, tmp: Path) -> list[CellResult]:
    """Run ``run.runbook`` with its failing sources and judge each of them."""
    declared = DECLARED[run.runbook]
    env_params = sandbox.environment()
    params = {k: v for k, v in env_params.items() if k in declared}
    params.update({k: v for k, v in FAST.items() if k in declared})
    kernel_env = dict(sandbox.kernel_env())
    work = tmp / re.sub(r"[^a-z0-9]+", "-", run.key.lower())[:120]
    made: dict[str, tuple[tuple[str, ...], Any]] = {}
    with contextlib.ExitStack() as stack:
        try:
            for param, failure in run.failing:
                value, tokens, server = stack.enter_context(
                    make_fault(SOURCES[param], failure, healthy=_healthy(param, env_params),
                               tmp=work / param, env=kernel_env, pg=pg)
                )  # fmt: skip
                params[param], made[param] = value, (tokens, server)
        except Unavailable as exc:
            return [_skipped(run, p, f, str(exc)) for p, f in run.failing]
        t0 = time.monotonic()
        result = run_runbook(
            run.runbook, params=params, output_root=work / "out", timeout_s=DEADLINE_S,
            extra_env=kernel_env,
        )  # fmt: skip
        secs = time.monotonic() - t0
        return [judge(result, p, f, *made[p], secs) for p, f in run.failing]


def _skipped(run: Run, param: str, failure: str, why: str) -> CellResult:
    return CellResult(run.runbook, param, failure, "", "", 0.0, [], [], skipped=why)


@pytest.fixture(scope="module")
def matrix(
    sandbox: Any, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[str, str, str], CellResult]]:
    """Every run of the plan, two at a time; results keyed by (runbook, parameter, failure)."""
    try:
        pg = request.getfixturevalue("scram_pg")
        pg_target = (pg.tcp_port, *pg.monitor)
    except pytest.skip.Exception:
        pg_target = None
    tmp = tmp_path_factory.mktemp("matrix")
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        done = pool.map(lambda r: execute(r, sandbox, pg_target, tmp), PLAN)
        results = {(c.runbook, c.param, c.failure): c for cells in done for c in cells}
    out = os.environ.get("AURA_OPS_MATRIX_OUT")
    if out:
        write_results(Path(out), results)
    yield results


def write_results(out: Path, results: Mapping[tuple[str, str, str], CellResult]) -> None:
    """``matrix.json`` and ``matrix.md`` (the table of docs/reliability.md) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [dataclasses.asdict(c) for c in results.values()]
    meta = {"mode": MODE, "at": dt.datetime.now(dt.UTC).isoformat(), "workers": WORKERS,
            "deadline_s": DEADLINE_S, "slow_delay_s": DELAY_S, "cells": rows}  # fmt: skip
    (out / "matrix.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    (out / "matrix.md").write_text(markdown(results), encoding="utf-8")
    (out / "summary.md").write_text(summary(results), encoding="utf-8")


def summary(results: Mapping[tuple[str, str, str], CellResult]) -> str:
    """One row per runbook (the README's table): cells run, how the failing source was
    reported, verdicts, slowest run, cells that broke a rule."""
    head = ("runbook", "sources", "cells", "failing source reported", "verdict", "slowest",
            "broke a rule")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for runbook in DECLARED:
        cells = [c for (r, _, _), c in results.items() if r == runbook and not c.skipped]
        if not cells:
            continue
        worst = sorted({c.status or "none" for c in cells})
        verdicts = sorted({c.verdict for c in cells})
        broke = sum(1 for c in cells if c.problems)
        lines.append(
            f"| {runbook} | {len({c.param for c in cells})} | {len(cells)} | "
            f"{' / '.join(worst)} | {' / '.join(verdicts)} | "
            f"{max(c.seconds for c in cells):.0f} s | {broke} |"
        )
    return "\n".join(lines) + "\n"


def markdown(results: Mapping[tuple[str, str, str], CellResult]) -> str:
    """runbook × source rows, one column per failure: ``status · seconds`` or n/a."""
    lines = ["| runbook | source | " + " | ".join(FAILURES) + " |",
             "|---|---|" + "---|" * len(FAILURES)]  # fmt: skip
    for runbook in DECLARED:
        for param in sources_of(runbook):
            cells = []
            for failure in FAILURES:
                c = results.get((runbook, param, failure))
                if c is None:
                    cells.append("–" if _supported(param, failure) else "n/a")
                elif c.skipped:
                    cells.append("skipped")
                else:
                    gap = (runbook, param, failure) in KNOWN_GAPS or (
                        "*",
                        param,
                        failure,
                    ) in KNOWN_GAPS
                    mark = "" if not c.problems else (" ✗ gap" if gap else " ✗")
                    cells.append(f"{c.status or 'none'} · {c.seconds:.0f} s{mark}")
            lines.append(f"| {runbook} | `{param}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def test_every_source_parameter_is_classified() -> None:
    """A runbook parameter that looks like a data source is in the matrix or explained away."""
    unclassified = {
        f"{runbook}.{name}"
        for runbook, declared in DECLARED.items()
        for name in declared
        if SOURCE_LIKE.search(name) and name not in SOURCES and name not in NOT_SOURCES
    }
    assert set() == unclassified


def test_the_plan_reaches_every_runbook_and_failure() -> None:
    """The sample runs every runbook and exercises each of the five failures somewhere."""
    sample = plan("sample")
    assert set(DECLARED) <= {r.runbook for r in sample} | {r for r in DECLARED if not sources_of(r)}
    assert set(FAILURES) == {f for r in sample for _, f in r.failing}


@pytest.mark.parametrize(
    ("run", "param", "failure"), CELLS, ids=[f"{r.runbook}-{p}-{f}" for r, p, f in CELLS]
)
def test_failing_source_is_unknown_never_ok(
    matrix: dict[tuple[str, str, str], CellResult], run: Run, param: str, failure: str
) -> None:
    """The run finishes in time, writes its report and names the failing source, never OK."""
    cell = matrix[(run.runbook, param, failure)]
    if cell.skipped:
        if IN_CI:
            pytest.fail(f"required in CI: {cell.skipped}")
        pytest.skip(cell.skipped)
    gap = KNOWN_GAPS.get((run.runbook, param, failure)) or KNOWN_GAPS.get(("*", param, failure))
    if gap and cell.problems:
        pytest.xfail(gap)
    assert not gap, f"known gap fixed: remove it from KNOWN_GAPS ({gap})"
    assert [] == cell.problems, cell.summaries
