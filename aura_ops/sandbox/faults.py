"""The fault catalogue: what each drill breaks, and what its runbook's verdict must name."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["FAULTS", "SERVICE_FAULTS", "Fault", "faults_for"]

#: Switches the sandbox service understands (``POST /_sandbox/faults``).
SERVICE_FAULTS = frozenset({"bad-deploy", "rate-limit", "worker-stall"})


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injectable fault.

    ``service`` names the switch flipped inside the sandbox service (with ``params``);
    ``deploy`` records a deployment just before the switch, as a real bad release would;
    ``expect`` lists the words the runbook's verdict must contain for the drill to pass.
    """

    name: str
    runbook: str
    summary: str
    service: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    deploy: Mapping[str, str] | None = None
    expect: tuple[str, ...] = ()


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            name="bad-deploy",
            runbook="high-error-rate",
            summary="deploy v2.4.1 makes POST /api/render fail with KeyError (HTTP 500)",
            service="bad-deploy",
            params={"missing_key": "output_codec"},
            deploy={
                "version": "v2.4.1",
                "previous": "v2.4.0",
                "author": "release-bot",
                "description": "render: read output codec from new template settings",
            },
            expect=("/api/render", "KeyError", "v2.4.1"),
        ),
        Fault(
            name="rate-limit",
            runbook="high-error-rate",
            summary="GET /api/projects rejected with HTTP 429 'Rate limit exceeded'",
            service="rate-limit",
            params={"prefix": "/api/projects"},
            expect=("/api/projects", "429"),
        ),
    )
}


def faults_for(runbook: str) -> list[Fault]:
    """The faults whose drill exercises ``runbook``, in catalogue order."""
    return [f for f in FAULTS.values() if f.runbook == runbook]
