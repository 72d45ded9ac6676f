"""One redaction pass for everything aura-ops writes: notebooks, reports, findings, logs.

Two kinds of secret are removed:

- **known values**: the values of environment variables named by ``*_env`` parameters and of
  any environment variable whose name looks secret (``*PASSWORD*``, ``*TOKEN*``, ``*SECRET*``,
  ``*_KEY``, ``*DSN*``, ...), wherever they appear;
- **shapes**: passwords in URLs and DSNs, ``Authorization``/bearer headers, ``password=`` /
  ``token=`` / ``api_key=`` / ``db_password = "..."`` assignments, and well-known token
  formats;
- **keys**: in JSON-like data (:meth:`Redactor.obj`), string values under secret-looking keys
  (``password``, ``db_password``, ``api_key``, ``token``, ``dsn``, ...; never ``*_env``, which
  name a variable and are shown on purpose).

Every output goes through :meth:`Redactor.text` or :meth:`Redactor.obj`; there is no second path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MASK", "Redactor", "default_redactor"]

MASK = "[REDACTED]"

_SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|_KEY$|DSN|CREDENTIAL|AUTH)", re.IGNORECASE
)
#: a JSON key whose string value is a secret: ends with a secret word (``db_password``,
#: ``client_secret``, ``dsn``), never an ``*_env`` name nor a count (``prompt_tokens``)
_SECRET_KEY = re.compile(
    r"(?i)(?:^|[_-])(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
    r"private[_-]?key|credentials?|authorization|dsn)$"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host
    (
        re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"]+(?=@)"),
        rf"\g<pre>{MASK}",
    ),
    # Authorization: Bearer xxx / Basic xxx
    (
        re.compile(
            r"(?i)(?P<pre>authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token)?\s*)"
            r"[A-Za-z0-9._~+/=-]{4,}"
        ),
        rf"\g<pre>{MASK}",
    ),
    (re.compile(r"(?i)(?P<pre>\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\g<pre>{MASK}"),
    # key=value / "key": "value" / db_password = "value" for secret-looking names (libpq
    # password=..., api_key=..., a parameters cell's assignment); never an *_env name
    (
        re.compile(
            r"(?i)(?P<pre>\b(?:\w*?[_-])?(?:password|passwd|pwd|secret|token|api[_-]?key|"
            r"access[_-]?key|private[_-]?key)[\"']?\s*[:=]\s*[\"']?)(?!\[REDACTED\])"
            r"[^\s\"'&,;}]+"
        ),
        rf"\g<pre>{MASK}",
    ),
    # well-known token formats
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}\b"), MASK),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"), MASK),
)


class Redactor:
    """Removes known secret values and secret-shaped strings from text and JSON-like data."""

    def __init__(self, secrets: Iterable[str] = (), *, min_length: int = 6) -> None:
        values = {s for s in secrets if s and len(s) >= min_length}
        # longest first, so a DSN is masked whole before its password part
        self._values = sorted(values, key=len, reverse=True)

    @classmethod
    def from_environment(
        cls, env_names: Iterable[str] = (), environ: Mapping[str, str] | None = None
    ) -> Redactor:
        """Secrets from the named env vars plus every env var whose name looks secret."""
        env = os.environ if environ is None else environ
        names = set(env_names) | {k for k in env if _SECRET_NAME.search(k)}
        secrets = [env[n] for n in names if env.get(n)]
        # the password inside a DSN, on its own, is a secret too
        for value in list(secrets):
            m = re.search(r"://[^:/@\s]*:([^@\s]+)@", value) or re.search(
                r"(?i)\bpassword\s*=\s*'?([^\s']+)", value
            )
            if m:
                secrets.append(m.group(1))
        return cls(secrets)

    def text(self, s: str) -> str:
        """``s`` with every secret masked."""
        if not s:
            return s
        for value in self._values:
            if value in s:
                s = s.replace(value, MASK)
        for pattern, repl in _PATTERNS:
            s = pattern.sub(repl, s)
        return s

    def obj(self, value: Any) -> Any:
        """A copy of a JSON-like value (dicts, lists, strings) with every string redacted and
        every string under a secret-looking key masked whole."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            secret = {k for k, v in value.items() if v and isinstance(v, str)}
            secret = {k for k in secret if _SECRET_KEY.search(str(k))}
            return {k: MASK if k in secret else self.obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.obj(v) for v in value]
        return value


def default_redactor(
    parameters: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Redactor:
    """The redactor for a run: env vars named by ``*_env`` parameters plus secret-looking ones,
    looked up in ``environ`` (the kernel's whole environment; default ``os.environ``)."""
    names = [str(v) for k, v in (parameters or {}).items() if k.endswith("_env") and v]
    return Redactor.from_environment(names, environ)
