"""The triage runbook, drilled against every fault of the catalogue: for each it must name the
fault's own runbook as the next one to run, with a severity; without a fault, nothing.

The faults are read from the catalogue when the tests are collected, so a fault added there is
triaged here without touching this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aura_ops.drill import DrillResult, run_drill
from aura_ops.findings import Finding, Status
from aura_ops.sandbox import FAULTS

pytestmark = pytest.mark.slow

#: Seconds of traffic after the fault before triage starts; faults not named here need 1 s.
#: missing-index: enough slow project pages in the window for their p95 to pass 1 s.
FAULT_S: dict[str, float] = {"missing-index": 3.0}


@pytest.fixture(scope="module", autouse=True)
def warm_kernel() -> Iterator[None]:
    """One warm kernel for the ~20 triage drills (``aura_ops.kernelpool``): each run skips the
    kernel start and the imports, which the next kernel does while the next sandbox starts."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AURA_OPS_WARM_KERNELS", "1")
        yield


def proposal(result: DrillResult) -> Finding:
    return next(f for f in result.run.findings if f.check == "triage.next_runbook")


def signals(result: DrillResult) -> list[str]:
    return [
        f"{f.status.name} {f.check}: {f.summary}"
        for f in result.run.findings
        if f.status >= Status.WARNING
    ]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_triage_proposes_the_faults_runbook(fault: str, tmp_path: Path) -> None:
    """The fault's runbook is proposed next, at a severity from SEV-1 to SEV-3."""
    result = run_drill(
        "triage",
        fault=fault,
        output_root=tmp_path,
        baseline_s=1.0,
        fault_s=FAULT_S.get(fault, 1.0),
    )
    found = proposal(result)
    assert FAULTS[fault].runbook == found.labels.get("runbook"), signals(result)
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert found.labels["severity"] in ("SEV-1", "SEV-2", "SEV-3")
    assert result.run.verdict.headline.startswith(f"Run {FAULTS[fault].runbook} next -- ")


def test_no_fault_proposes_nothing(tmp_path: Path) -> None:
    """A healthy sandbox: OK, no runbook to run, SEV-4."""
    result = run_drill("triage", fault=None, output_root=tmp_path, baseline_s=1.0, fault_s=1.0)
    assert result.passed, signals(result)
    found = proposal(result)
    assert "runbook" not in found.labels
    assert "SEV-4" == found.labels["severity"]
