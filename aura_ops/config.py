"""Environments, parameters, time windows and secrets.

An environment is ``parameters/environments/NAME.yaml``::

    description: Production EU
    parameters:            # runbook parameters this environment sets (literals only)
      base_url: https://api.example.com
      prometheus_url: http://prometheus:9090
      dsn_env: AURA_DB_DSN  # the NAME of the env var holding the DSN, never the DSN

Secrets never appear in parameters: a parameter ending in ``_env`` names an environment
variable, resolved inside the kernel by :func:`secret`.

Interactive notebooks get their environment from ``AURA_OPS_ENV`` (an environment name, or the
path of an environment file), which ``aura-ops lab --env NAME`` sets for the Jupyter server and
so for every kernel it starts. A runbook's setup cell calls :func:`connect`, which applies that
environment over the parameters cell's defaults -- the same precedence as ``aura-ops run``
(notebook defaults < environment < explicit ``-p``). Inside a run of the runner, or in a
worksheet pinned to a past run by ``aura-ops open``, :func:`connect` changes nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import yaml

from aura_ops.errors import ConfigError

__all__ = [
    "ENV_VARIABLE",
    "PINNED_RUN",
    "connect",
    "environment_names",
    "load_environment",
    "load_environment_file",
    "preselected_environment",
    "project_root",
    "secret",
    "window",
]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: Environment variable naming the environment (or environment file) interactive kernels use.
ENV_VARIABLE = "AURA_OPS_ENV"
#: Notebook variable set by ``aura-ops open`` in a worksheet: parameters pinned to that run.
PINNED_RUN = "pinned_run"
_LITERAL = (str, int, float, bool, type(None))


def project_root() -> Path:
    """Where ``notebooks/`` and ``parameters/`` live.

    ``AURA_OPS_HOME`` if set; else the current directory if it has ``notebooks/``; else the
    checkout this package was installed from (editable installs).
    """
    if os.environ.get("AURA_OPS_HOME"):
        return Path(os.environ["AURA_OPS_HOME"]).resolve()
    cwd = Path.cwd()
    if (cwd / "notebooks").is_dir():
        return cwd
    here = Path(__file__).resolve().parent.parent
    if (here / "notebooks").is_dir():
        return here
    return cwd


def environment_names(root: Path | None = None) -> list[str]:
    """Names of the environments in ``parameters/environments/``."""
    d = (root or project_root()) / "parameters" / "environments"
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_environment(name: str, root: Path | None = None) -> dict[str, Any]:
    """The parameters an environment sets. Unknown names raise :class:`ConfigError`."""
    if not NAME_RE.match(name or ""):
        raise ConfigError(
            f"invalid environment name {name!r}", hint="use lowercase letters, digits, '-' and '_'"
        )
    path = (root or project_root()) / "parameters" / "environments" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(environment_names(root)) or "none"
        raise ConfigError(f"unknown environment {name!r}", hint=f"known environments: {known}")
    return load_environment_file(path)


def load_environment_file(path: str | Path) -> dict[str, Any]:
    """The parameters of an environment file (the format of ``parameters/environments/*.yaml``)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read environment file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    params = doc.get("parameters", {}) if isinstance(doc, Mapping) else None
    if not isinstance(params, Mapping):
        raise ConfigError(f"{path}: 'parameters' must be a mapping")
    for key, value in params.items():
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            raise ConfigError(
                f"{path}: parameter {key!r} must be a literal, not {type(value).__name__}"
            )
    return dict(params)


def preselected_environment(root: Path | None = None) -> tuple[str, dict[str, Any]]:
    """The environment ``AURA_OPS_ENV`` preselects, as ``(label, parameters)``; none: ``("", {})``.

    The variable holds an environment name (``prod``) or the path of an environment file
    (``aura-ops lab --sandbox`` writes one for the sandbox it started).
    """
    raw = os.environ.get(ENV_VARIABLE, "").strip()
    if not raw:
        return "", {}
    if raw.endswith((".yaml", ".yml")) or "/" in raw or os.sep in raw:
        return Path(raw).stem, load_environment_file(raw)
    return raw, load_environment(raw, root)


def connect(
    namespace: MutableMapping[str, Any] | None = None, *, quiet: bool = False
) -> dict[str, Any]:
    """Point an interactive notebook at the preselected environment; returns what it set.

    Called in a runbook's setup cell as ``connect(globals())`` (``namespace`` defaults to the
    caller's globals). Each environment value replaces the parameter of the same name that the
    parameters cell defined; names the notebook does not define are left alone, as the runner
    does. Nothing changes inside a runner's run (``AURA_OPS_RUN_ID`` is set: parameters were
    merged already), in a worksheet pinned to a run (``pinned_run`` is set), or when no
    environment is preselected. To try another value, assign it in a cell after this one.
    """
    if namespace is None:
        namespace = sys._getframe(1).f_globals
    if os.environ.get("AURA_OPS_RUN_ID") or namespace.get(PINNED_RUN):
        return {}
    label, params = preselected_environment()
    applied = {
        key: value
        for key, value in params.items()
        if key.isidentifier()
        and not key.startswith("_")
        and key in namespace
        and isinstance(namespace[key], _LITERAL)
    }
    namespace.update(applied)
    if applied and not quiet:
        shown = ", ".join(f"{k}={v!r}" for k, v in applied.items())
        print(f"environment {label!r}: {shown}")
    return applied


def secret(env_name: str) -> str:
    """Resolve a secret from the NAME of the environment variable that holds it.

    Called inside the kernel, so the secret itself is never a parameter and never written into
    the executed notebook.
    """
    if not env_name:
        raise ConfigError(
            "no secret configured",
            hint="set the *_env parameter to the name of an environment variable",
        )
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(
            f"environment variable {env_name} is not set",
            hint=f"export {env_name}=... in the shell that runs aura-ops",
        )
    return value


def window(
    window_start: str = "",
    window_end: str = "",
    lookback_minutes: float = 15.0,
) -> tuple[dt.datetime, dt.datetime]:
    """The incident window: explicit ISO times, else the last ``lookback_minutes`` up to now."""
    from aura_ops.changes import parse_time

    try:
        end = parse_time(window_end) if window_end else dt.datetime.now(dt.UTC)
        start = (
            parse_time(window_start)
            if window_start
            else end - dt.timedelta(minutes=lookback_minutes)
        )
    except ValueError as exc:
        raise ConfigError(
            f"bad window time: {exc}", hint="use ISO 8601, e.g. 2026-11-23T10:15:00Z"
        ) from exc
    if start >= end:
        raise ConfigError(f"window start {start.isoformat()} is not before end {end.isoformat()}")
    return start, end
