"""Errors raised by aura-ops, each carrying its context and a one-line fix.

::

    AuraOpsError
    ├── ConfigError              bad parameters, unknown environment, missing env var
    ├── SourceUnavailableError   a data source is down, refusing, slow or forbidden
    │   └── SourceTimeoutError   ... specifically: it did not answer within the timeout
    ├── QueryError               the source answered, but rejected the query
    ├── RunbookError             unknown runbook, unreadable notebook, failed execution
    └── RemediationRefused       a mitigation was asked for without approval

``fetch_*`` functions raise these; ``check_*`` functions turn ``SourceUnavailableError`` and
``QueryError`` into ``UNKNOWN`` findings.
"""

from __future__ import annotations

__all__ = [
    "AuraOpsError",
    "ConfigError",
    "QueryError",
    "RemediationRefused",
    "RunbookError",
    "SourceTimeoutError",
    "SourceUnavailableError",
]


class AuraOpsError(Exception):
    """Base class. ``hint`` is a one-line fix shown to the user."""

    def __init__(self, message: str, *, hint: str = "", source: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.source = source

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """``message (hint)`` on one line, for the CLI and notebook banners."""
        return f"{self.message} ({self.hint})" if self.hint else self.message

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, source: str = "", hint: str = ""
    ) -> AuraOpsError:
        """Wrap a lower-level exception, keeping its type name in the message."""
        text = str(exc) or type(exc).__name__
        err = cls(f"{type(exc).__name__}: {text}", hint=hint, source=source)
        err.__cause__ = exc
        return err


class ConfigError(AuraOpsError):
    """Bad configuration or parameters."""


class SourceUnavailableError(AuraOpsError):
    """A data source could not be read (down, refusing, forbidden, answering garbage)."""


class SourceTimeoutError(SourceUnavailableError):
    """A data source did not answer within its timeout."""


class QueryError(AuraOpsError):
    """The source answered but rejected the query (bad PromQL, SQL error, 4xx)."""


class RunbookError(AuraOpsError):
    """A runbook could not be found, read or executed."""


class RemediationRefused(AuraOpsError):
    """A mitigation was refused: not approved, or inside an alert-triggered run."""
