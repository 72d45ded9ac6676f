"""Which runbook an alert runs, with which parameters: ``parameters/routes.yaml``.

::

    defaults: {environment: example, lookback_minutes: 15}
    runbook_from_alert: true          # honour a `runbook` annotation (or label) on the alert
    routes:
      - name: error-ratio
        match: {alertname: AuraHighErrorRatio}         # label equality ('' = label absent)
        match_re: {severity: "critical|warning"}      # label regex, anchored like Alertmanager
        runbook: high-error-rate
        environment: example                          # or labels.env
        lookback_minutes: 15                          # window_start = startsAt - 15 min
        params:                                       # runbook parameter <- label/annotation
          namespace: labels.namespace
          deployment: {from: labels.deployment, pattern: "^[a-z0-9-]{1,63}$"}
        set: {error_ratio_crit: 0.05}                 # literals

Routes are tried in order; the first match wins, then a ``runbook`` annotation/label when
``runbook_from_alert`` is on; otherwise the alert is unrouted (recorded, no run). The file is
checked when loaded: runbooks and environments exist, every mapped parameter is declared by
the notebook, patterns compile, unknown keys are typos.

Label values reach a notebook only as parameter *values*, rendered by papermill as escaped
string literals, and only through ``params``. Each value must match the parameter's
``pattern`` (default :data:`SAFE_VALUE`: no quotes, brackets, ``;`` or ``..`` path segments)
and convert to the parameter's type; otherwise the alert is refused (:class:`PayloadError`,
HTTP 422). The ``receivers`` section names the environment variables holding webhook secrets;
no secret is ever written in this file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from aura_ops.alerts import Alert, PayloadError
from aura_ops.errors import AuraOpsError, ConfigError

__all__ = [
    "ParamSource",
    "ReceiverConfig",
    "Route",
    "RouteTable",
    "RunRequest",
    "SAFE_VALUE",
    "load_routes",
]

#: The default pattern a label value must match to become a parameter value.
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+=,% -]{0,256}$")
_TRAVERSAL = re.compile(r"(^|[/\\])\.\.([/\\]|$)")
_REF = re.compile(r"^(labels|annotations)\.([A-Za-z_][A-Za-z0-9_]*)$")
#: Parameters the runner or the alert's own time fill in; a route cannot map them.
RESERVED = frozenset({"run_id", "trigger", "env", "window_start", "window_end"})
RECEIVERS = ("alertmanager", "grafana", "pagerduty")
_ROUTE_KEYS = {"name", "match", "match_re", "sources", "runbook", "environment"}
_ROUTE_KEYS |= {"lookback_minutes", "params", "set"}
_TOP_KEYS = {"version", "defaults", "runbook_from_alert", "routes", "receivers"}
_TOP_KEYS |= {"notify", "history"}


@dataclasses.dataclass(frozen=True)
class ReceiverConfig:
    """Authentication of one webhook endpoint: the NAMES of the env vars holding its secrets.

    A variable may hold several comma-separated values (old and new secret during a rotation).
    """

    name: str
    bearer_token_env: str = ""
    hmac_secret_env: str = ""
    signature_header: str = "X-Grafana-Alerting-Signature"
    timestamp_header: str = ""
    max_skew_s: float = 300.0
    signature_secrets_env: str = ""

    def values(self, env_name: str, environ: Mapping[str, str] | None = None) -> list[str]:
        """The secrets held by ``env_name`` (empty when unset)."""
        raw = (os.environ if environ is None else environ).get(env_name, "") if env_name else ""
        return [v.strip() for v in raw.split(",") if v.strip()]

    def env_names(self) -> list[str]:
        """Every env var this receiver reads."""
        names = (self.bearer_token_env, self.hmac_secret_env, self.signature_secrets_env)
        return [n for n in names if n]

    def enabled(self, environ: Mapping[str, str] | None = None) -> bool:
        """True when every configured secret is set (an endpoint with none is disabled)."""
        names = self.env_names()
        return bool(names) and all(self.values(n, environ) for n in names)


DEFAULT_RECEIVERS = {
    "alertmanager": ReceiverConfig("alertmanager", bearer_token_env="AURA_OPS_ALERTMANAGER_TOKEN"),
    "grafana": ReceiverConfig("grafana", hmac_secret_env="AURA_OPS_GRAFANA_SECRET"),
    "pagerduty": ReceiverConfig("pagerduty", signature_secrets_env="AURA_OPS_PAGERDUTY_SECRETS"),
}


@dataclasses.dataclass(frozen=True)
class ParamSource:
    """One runbook parameter filled from the alert: ``labels.X`` or ``annotations.X``."""

    name: str
    ref: str
    pattern: re.Pattern[str] | None = None
    required: bool = False

    def lookup(self, alert: Alert) -> str | None:
        """The label or annotation value in ``alert``, None when absent."""
        kind, _, key = self.ref.partition(".")
        return (alert.labels if kind == "labels" else alert.annotations).get(key)

    def check(self, value: str) -> str:
        """``value`` if acceptable for this parameter, else :class:`PayloadError`."""
        bad = any(ord(c) < 32 or ord(c) == 127 for c in value)
        if self.pattern is not None:
            bad = bad or not self.pattern.fullmatch(value)
        else:
            bad = bad or not SAFE_VALUE.match(value) or bool(_TRAVERSAL.search(value))
        if bad:
            rule = self.pattern.pattern if self.pattern is not None else "the safe-value pattern"
            raise PayloadError(
                f"{self.ref}={value[:80]!r} is not an acceptable value for parameter "
                f"{self.name!r} (must match {rule})",
                hint="fix the alert's labels, or give this parameter a pattern in routes.yaml",
            )
        return value


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """What to run for an alert. ``group_key`` is equal for alerts that would run the same."""

    runbook: str
    environment: str
    params: Mapping[str, Any]
    route: str
    group_key: str


@dataclasses.dataclass(frozen=True)
class Route:
    """One entry of ``routes:`` (see the module docstring)."""

    name: str
    runbook: str
    match: Mapping[str, str] = dataclasses.field(default_factory=dict)
    match_re: Mapping[str, re.Pattern[str]] = dataclasses.field(default_factory=dict)
    sources: frozenset[str] = frozenset()
    environment: str = ""
    lookback_minutes: float = 15.0
    params: tuple[ParamSource, ...] = ()
    set: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def matches(self, alert: Alert) -> bool:
        """Alertmanager matcher semantics: a missing label equals ''; regexes are anchored."""
        if self.sources and alert.source not in self.sources:
            return False
        labels = alert.labels
        if any(labels.get(k, "") != v for k, v in self.match.items()):
            return False
        return all(rx.fullmatch(labels.get(k, "")) for k, rx in self.match_re.items())


def _declared(runbook: str, root: Path | None, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if runbook not in cache:
        import papermill

        from aura_ops.runner import resolve_runbook

        cache[runbook] = dict(papermill.inspect_notebook(str(resolve_runbook(runbook, root))))
    return cache[runbook]


class RouteTable:
    """The loaded, validated routes file. :meth:`resolve` turns an alert into a run request."""

    def __init__(
        self,
        routes: list[Route],
        *,
        defaults: Mapping[str, Any] | None = None,
        runbook_from_alert: bool = True,
        receivers: Mapping[str, ReceiverConfig] | None = None,
        options: Mapping[str, Any] | None = None,
        root: Path | None = None,
        path: Path | None = None,
    ) -> None:
        self.routes = list(routes)
        self.defaults = dict(defaults or {})
        self.runbook_from_alert = runbook_from_alert
        self.receivers = {**DEFAULT_RECEIVERS, **(receivers or {})}
        self.options = dict(options or {})
        self.root = root
        self.path = path
        self._declared: dict[str, dict[str, Any]] = {}
        for route in self.routes:
            self._validate(route)
        env = str(self.defaults.get("environment", "") or "")
        if env and not _REF.match(env):
            from aura_ops.config import load_environment

            load_environment(env, root)

    def declared(self, runbook: str) -> dict[str, Any]:
        """The parameters ``runbook`` declares (papermill.inspect_notebook, cached)."""
        return _declared(runbook, self.root, self._declared)

    def _validate(self, route: Route) -> None:
        where = f"route {route.name!r}"
        try:
            declared = self.declared(route.runbook)
        except AuraOpsError as exc:
            raise ConfigError(f"{where}: {exc.one_line()}") from None
        env = route.environment
        if env and not _REF.match(env):
            from aura_ops.config import load_environment

            try:
                load_environment(env, self.root)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc.one_line()}") from None
        from aura_ops.runner import coerce_parameter

        for name in [p.name for p in route.params] + list(route.set):
            if name in RESERVED:
                raise ConfigError(f"{where}: parameter {name!r} is set by aura-ops, not a route")
            if name not in declared:
                raise ConfigError(
                    f"{where}: runbook {route.runbook!r} has no parameter {name!r}",
                    hint=f"its parameters: {', '.join(declared)}",
                )
        for name, value in route.set.items():
            coerce_parameter(name, str(value), declared[name])

    def match(self, alert: Alert) -> Route | None:
        """The route for ``alert``: the first matching one, else one built from its annotation."""
        for route in self.routes:
            if route.matches(alert):
                return route
        wanted = alert.annotations.get("runbook") or alert.labels.get("runbook")
        if self.runbook_from_alert and wanted:
            return Route(
                name=f"annotation:{wanted[:64]}",
                runbook=wanted,
                environment=str(self.defaults.get("environment", "")),
                lookback_minutes=float(self.defaults.get("lookback_minutes", 15)),
            )
        return None

    def resolve(self, alert: Alert) -> RunRequest | None:
        """The run request for a firing ``alert``; None when unrouted.

        Raises :class:`PayloadError` (422) for an unknown runbook or environment, a missing
        required label, or a value that fails its parameter's pattern or type.
        """
        route = self.match(alert)
        if route is None:
            return None
        try:
            declared = self.declared(route.runbook)
        except AuraOpsError as exc:
            raise PayloadError(f"alert routed to runbook {route.runbook[:64]!r}: {exc}") from None
        environment = self._environment(route, alert)
        params = self._params(route, alert, declared)
        group = json.dumps(
            [route.name, alert.name, route.runbook, environment, sorted(params.items())],
            default=str,
        )
        if "window_start" in declared and alert.starts_at:
            from aura_ops.changes import parse_time

            start = parse_time(alert.starts_at) - dt.timedelta(minutes=route.lookback_minutes)
            params["window_start"] = start.isoformat()
        return RunRequest(
            runbook=route.runbook,
            environment=environment,
            params=params,
            route=route.name,
            group_key=hashlib.sha256(group.encode()).hexdigest()[:24],
        )

    def _environment(self, route: Route, alert: Alert) -> str:
        env = route.environment
        if not _REF.match(env):
            return env  # a literal name, checked when the routes were loaded
        env = ParamSource("environment", env).lookup(alert) or ""
        if not env:
            return ""
        from aura_ops.config import load_environment

        try:
            load_environment(env, self.root)
        except ConfigError as exc:
            raise PayloadError(f"alert routed to environment: {exc}") from None
        return env

    def _params(self, route: Route, alert: Alert, declared: Mapping[str, Any]) -> dict[str, Any]:
        from aura_ops.runner import coerce_parameter

        params: dict[str, Any] = {}
        for name, value in route.set.items():
            params[name] = coerce_parameter(name, str(value), declared[name])
        for source in route.params:
            value = source.lookup(alert)
            if value is None:
                if source.required:
                    raise PayloadError(f"alert has no {source.ref} (required by {route.name!r})")
                continue
            try:
                params[source.name] = coerce_parameter(
                    source.name, source.check(value), declared[source.name]
                )
            except ConfigError as exc:
                raise PayloadError(f"{source.ref}: {exc}") from None
        return params


# --- loading -------------------------------------------------------------------------------


def _check_keys(doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")


def _regex(pattern: Any, where: str) -> re.Pattern[str]:
    try:
        return re.compile(str(pattern))
    except re.error as exc:
        raise ConfigError(f"{where}: bad regex {pattern!r}: {exc}") from None


def _param_source(name: str, spec: Any, where: str) -> ParamSource:
    if isinstance(spec, str):
        spec = {"from": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: params.{name} must be 'labels.X' or {{from: ..., ...}}")
    _check_keys(spec, {"from", "pattern", "required"}, f"{where}: params.{name}")
    ref = str(spec.get("from", ""))
    if not _REF.match(ref):
        raise ConfigError(f"{where}: params.{name}: {ref!r} is not labels.NAME / annotations.NAME")
    pattern = spec.get("pattern")
    rx = _regex(pattern, f"{where}: params.{name}") if pattern is not None else None
    return ParamSource(name, ref, rx, bool(spec.get("required", False)))


def _route(doc: Any, i: int, defaults: Mapping[str, Any]) -> Route:
    where = f"routes[{i}]"
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    _check_keys(doc, _ROUTE_KEYS, where)
    if not doc.get("runbook"):
        raise ConfigError(f"{where}: 'runbook' is required")
    match, match_re = doc.get("match") or {}, doc.get("match_re") or {}
    params, fixed = doc.get("params") or {}, doc.get("set") or {}
    if not all(isinstance(m, Mapping) for m in (match, match_re, params, fixed)):
        raise ConfigError(f"{where}: match, match_re, params and set must be mappings")
    sources = frozenset(str(s) for s in doc.get("sources") or ())
    if sources - set(RECEIVERS):
        raise ConfigError(f"{where}: sources must be among {', '.join(RECEIVERS)}")
    return Route(
        name=str(doc.get("name") or f"route-{i}"),
        runbook=str(doc["runbook"]),
        match={str(k): str(v) for k, v in match.items()},
        match_re={str(k): _regex(v, f"{where}: match_re.{k}") for k, v in match_re.items()},
        sources=sources,
        environment=str(doc.get("environment", defaults.get("environment", "")) or ""),
        lookback_minutes=float(doc.get("lookback_minutes", defaults.get("lookback_minutes", 15))),
        params=tuple(_param_source(str(k), v, where) for k, v in params.items()),
        set=dict(fixed),
    )


def _receivers(doc: Any) -> dict[str, ReceiverConfig]:
    if not isinstance(doc, Mapping):
        raise ConfigError("receivers must be a mapping of alertmanager/grafana/pagerduty")
    out = {}
    fields = {f.name for f in dataclasses.fields(ReceiverConfig)} - {"name"}
    for name, spec in doc.items():
        if name not in RECEIVERS or not isinstance(spec, Mapping):
            raise ConfigError(f"receivers.{name}: unknown receiver (use {', '.join(RECEIVERS)})")
        _check_keys(spec, fields, f"receivers.{name}")
        out[name] = dataclasses.replace(DEFAULT_RECEIVERS[name], **dict(spec))
    return out


def load_routes(path: str | Path, root: Path | None = None) -> RouteTable:
    """Read and validate a routes file; any problem raises :class:`ConfigError`."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read routes file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: must be a mapping with a 'routes' list")
    _check_keys(doc, _TOP_KEYS, str(path))
    defaults = doc.get("defaults") or {}
    routes = doc.get("routes") or []
    notify, history = doc.get("notify") or {}, doc.get("history") or {}
    for name, section, keys in (
        ("notify", notify, {"slack_webhook_env", "timeout_s"}),
        ("history", history, {"token_env"}),
        ("defaults", defaults, {"environment", "lookback_minutes"}),
    ):
        if not isinstance(section, Mapping):
            raise ConfigError(f"{path}: '{name}' must be a mapping")
        _check_keys(section, keys, f"{path}: {name}")
    if not isinstance(routes, list):
        raise ConfigError(f"{path}: 'routes' must be a list")
    try:
        table = RouteTable(
            [_route(r, i, defaults) for i, r in enumerate(routes)],
            defaults=defaults,
            runbook_from_alert=bool(doc.get("runbook_from_alert", True)),
            receivers=_receivers(doc.get("receivers") or {}),
            options={"notify": dict(notify), "history": dict(history)},
            root=root,
            path=path,
        )
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}", hint=exc.hint) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return table
