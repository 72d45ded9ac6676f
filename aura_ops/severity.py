"""Incident severity: a second judgement on top of the verdict, from ``parameters/severity.yaml``.

The verdict says how bad each finding is; severity says how big the incident is (SEV-1..4,
P0..P3), using the seeds' thresholds (004 "Severity Assessment": error rate > 5 % is P0, 3-5 %
P1, 1-3 % P2; 002 "Incident Severity Levels"). Rules are tried in order; the first that
matches wins:

- ``checks_critical``: any CRITICAL finding from one of these checks (service down, ...);
- ``error_ratio_above``: the worst error ratio observed by ``*.error_ratio`` /
  ``*.failing_endpoints`` findings;
- ``status_at_least``: the verdict status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from aura_ops.config import project_root
from aura_ops.errors import ConfigError
from aura_ops.findings import Finding, Status, roll_up

__all__ = ["Severity", "assess", "load_policy", "worst_error_ratio"]

_RATIO_CHECKS = ("error_ratio", "failing_endpoints")


@dataclasses.dataclass(frozen=True)
class Severity:
    """The incident's proposed severity and why."""

    level: str
    priority: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def load_policy(path: str | Path | None = None) -> dict[str, Any]:
    """The severity policy (default ``parameters/severity.yaml``)."""
    if path:
        p = Path(path)
    else:  # the project's policy, else the one shipped beside this checkout
        candidates = [project_root() / "parameters" / "severity.yaml",
                      Path(__file__).resolve().parent.parent / "parameters" / "severity.yaml"]
        p = next((c for c in candidates if c.is_file()), candidates[0])
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read severity policy {p}: {exc}") from exc
    if not isinstance(doc, Mapping) or not isinstance(doc.get("rules"), list):
        raise ConfigError(f"{p}: expected 'levels' and a list of 'rules'")
    return dict(doc)


def worst_error_ratio(findings: Iterable[Finding]) -> float | None:
    """The highest error ratio any finding observed (a number in 0..1), if any did."""
    ratios = [float(f.observed) for f in findings
              if f.check.endswith(_RATIO_CHECKS) and isinstance(f.observed, (int, float))
              and 0 <= float(f.observed) <= 1]
    return max(ratios) if ratios else None


def assess(findings: Iterable[Finding], policy: Mapping[str, Any] | None = None) -> Severity:
    """Propose a severity for a run's findings (see module docstring)."""
    items = list(findings)
    pol = policy if policy is not None else load_policy()
    levels = pol.get("levels", {})
    status = roll_up(items).status
    ratio = worst_error_ratio(items)
    for rule in pol["rules"]:
        level = str(rule["severity"])
        priority = str(levels.get(level, {}).get("priority", ""))
        critical = set(rule.get("checks_critical", ()))
        hit = next((f for f in items if f.status == Status.CRITICAL and f.check in critical), None)
        if hit is not None:
            return Severity(level, priority, f"{hit.check} is CRITICAL: {hit.summary}")
        above = rule.get("error_ratio_above")
        if above is not None and ratio is not None and ratio > float(above):
            return Severity(level, priority, f"error ratio {ratio:.1%} > {float(above):.0%}")
        floor = rule.get("status_at_least")
        if floor is not None and status >= Status.parse(floor):
            return Severity(level, priority, f"verdict {status.name}")
        if not critical and above is None and floor is None:  # the catch-all last rule
            return Severity(level, priority, str(rule.get("when", "no rule above matched")))
    return Severity("SEV-4", str(levels.get("SEV-4", {}).get("priority", "P3")), "no rule matched")
