"""The webhook-failures runbook, drilled against a customer endpoint that refuses or hangs."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fault", ["webhook-refused", "webhook-timeout"])
def test_webhook_fault_is_named(tmp_path: Path, fault: str) -> None:
    """Exhausted retries give a CRITICAL verdict naming the webhook endpoint and the reason."""
    result = run_drill("webhook-failures", fault=fault, output_root=tmp_path, fault_s=4.0)
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """With the endpoint answering, every webhook is delivered and the verdict is OK."""
    result = run_drill("webhook-failures", fault=None, output_root=tmp_path, fault_s=2.0)
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
