"""The request-trace runbook, drilled against the sandbox: a user's render that fails deep in
the worker on a PostgreSQL error, traced through the API, worker and database logs; and a
request that went through."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


def test_failing_request_is_traced_to_the_worker(tmp_path: Path) -> None:
    """The poisoned project's render: WARNING, failed in the worker with the database error."""
    result = run_drill(
        "request-trace", fault="poison-job", output_root=tmp_path, baseline_s=1.5, fault_s=0.5
    )
    assert result.passed, (result.run.verdict.headline, result.missing)
    trace = next(f for f in result.run.findings if f.check == "logs.trace")
    assert Status.WARNING == trace.status
    assert "failed in aura.worker" in trace.summary
    rows = trace.evidence[0].data["rows"]
    components = {row[1] for row in rows}
    assert {"aura.api", "aura.worker", "postgres"} <= components


def test_successful_request_is_ok(tmp_path: Path) -> None:
    """A render that went through (API, provider, worker, webhook): OK."""
    result = run_drill(
        "request-trace", fault=None, output_root=tmp_path, baseline_s=2.0, fault_s=0.5
    )
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
    trace = next(f for f in result.run.findings if f.check == "logs.trace")
    assert trace.summary.startswith("Request ") and "succeeded" in trace.summary
