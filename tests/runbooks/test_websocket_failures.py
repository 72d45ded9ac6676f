"""The websocket-failures runbook, drilled with a rejected Origin and the broker down."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


def test_origin_and_broker_are_named(tmp_path: Path) -> None:
    """The verdict is CRITICAL and names the rejected Origin (HTTP 403) and the broker."""
    result = run_drill(
        "websocket-failures", fault="websocket-origin", output_root=tmp_path, fault_s=3.0
    )
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL


def test_no_fault_is_ok(tmp_path: Path) -> None:
    """With the app's Origin allowed and the broker up, handshakes succeed: the verdict is OK."""
    result = run_drill("websocket-failures", fault=None, output_root=tmp_path, fault_s=2.0)
    assert result.passed, [f.summary for f in result.run.findings if f.status > Status.OK]
