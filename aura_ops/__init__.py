"""aura-ops: executable runbooks for on-call engineers.

The public surface a runbook notebook uses. Checks live in their modules (``health``,
``logs``, ``metrics``, ``database``, ``kube``, ``system``, ``changes``), imported as
``from aura_ops import health`` and called as ``health.check_health(base_url)``; the names
below are the few a runbook needs directly.
"""

from __future__ import annotations

from aura_ops.config import connect, load_environment, secret, window
from aura_ops.display import collected, conclude, show, show_figure
from aura_ops.errors import (
    AuraOpsError,
    ConfigError,
    QueryError,
    RemediationRefused,
    RunbookError,
    SourceTimeoutError,
    SourceUnavailableError,
)
from aura_ops.findings import Evidence, Finding, Status, Verdict, explains, roll_up, unknown

__version__ = "0.1.0"

__all__ = [
    "AuraOpsError",
    "ConfigError",
    "Evidence",
    "Finding",
    "QueryError",
    "RemediationRefused",
    "RunbookError",
    "SourceTimeoutError",
    "SourceUnavailableError",
    "Status",
    "Verdict",
    "__version__",
    "collected",
    "conclude",
    "connect",
    "explains",
    "load_environment",
    "roll_up",
    "secret",
    "show",
    "show_figure",
    "unknown",
    "window",
]
