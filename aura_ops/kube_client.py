"""Building a Kubernetes client, and one request with a timeout, for :mod:`aura_ops.kube`.

:func:`connect_kube` (kubeconfig context or in-cluster service account) and
:func:`connect_kube_url` (a plain URL: a fixture server, ``kubectl proxy``) return a
:class:`KubeApiClient`, an ``ApiClient`` that carries its timeout and the call that rebuilds it.

Every request is one GET through the client's own REST layer (its TLS, client certificates,
bearer-token refresh and proxy settings) with a ``(connect, read)`` timeout; the JSON is parsed
into plain dicts shaped exactly like the API's JSON
(``status.containerStatuses[0].lastState.terminated.reason``). The generated API classes and
their models are not used: importing ``CoreV1Api`` costs seconds, the models changed between
major versions and, from kubernetes 37 on, reject any field a newer API server adds. urllib3
retries are off (``retries=0``): one attempt, bounded by the timeout.

Failures become typed errors: unreachable, hanging, 5xx, 401 and 403 raise
:class:`~aura_ops.errors.SourceUnavailableError` (a 403 names the missing RBAC verb and
resource; a hang raises :class:`~aura_ops.errors.SourceTimeoutError`); 400/404 raise
:class:`~aura_ops.errors.QueryError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils.quantity import parse_quantity as _k8s_parse_quantity

from aura_ops.errors import ConfigError, QueryError, SourceTimeoutError, SourceUnavailableError

__all__ = [
    "CHANGE_CAUSE_ANNOTATION",
    "REVISION_ANNOTATION",
    "KubeApiClient",
    "connect_kube",
    "connect_kube_url",
    "parse_quantity",
    "parse_time",
]

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
RBAC_HINT = "deploy/rbac/aura-ops-readonly-role.yaml"


class KubeApiClient(k8s.ApiClient):
    """An ``ApiClient`` that remembers its timeout and how it was built.

    ``origin`` is the ``connect_kube*(...)`` call that rebuilds it (no secrets), used in the
    ``reproduce`` line of every finding.
    """

    def __init__(self, configuration: k8s.Configuration, *, timeout_s: float, origin: str) -> None:
        super().__init__(configuration)
        self.timeout_s = float(timeout_s)
        self.origin = origin


def _finish(cfg: k8s.Configuration, timeout_s: float, origin: str) -> KubeApiClient:
    if timeout_s <= 0:
        raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
    cfg.retries = 0  # one attempt: the timeout is the whole budget
    return KubeApiClient(cfg, timeout_s=timeout_s, origin=origin)


def connect_kube(
    context: str | None = None,
    *,
    kubeconfig: str | os.PathLike[str] | None = None,
    in_cluster: bool | None = None,
    timeout_s: float = 5.0,
) -> KubeApiClient:
    """A client for one cluster, from a kubeconfig context or the pod's service account.

    ``in_cluster=None`` picks the kubeconfig when one is given or found (``$KUBECONFIG``,
    ``~/.kube/config``), else the in-cluster service account when running in a pod.
    Raises :class:`ConfigError` when neither can be loaded.
    """
    args = [repr(context)] if context else []
    args += [f"kubeconfig={str(kubeconfig)!r}"] if kubeconfig else []
    args += [f"in_cluster={in_cluster}"] if in_cluster is not None else []
    args += [f"timeout_s={timeout_s}"] if timeout_s != 5.0 else []
    origin = f"connect_kube({', '.join(args)})"
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    default_path = Path("~/.kube/config").expanduser()
    if in_cluster is None:
        in_cluster = not (path or default_path.exists()) and "KUBERNETES_SERVICE_HOST" in os.environ
    cfg = k8s.Configuration()
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None,  # None: $KUBECONFIG merged
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
    except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
        where = "in-cluster service account" if in_cluster else f"kubeconfig {path or default_path}"
        raise ConfigError(
            f"cannot load Kubernetes credentials from the {where}: {exc}",
            hint="Pass kubeconfig=/path and context='name', or run in a pod with a service account",
        ) from exc
    return _finish(cfg, timeout_s, origin)


def connect_kube_url(
    url: str,
    *,
    token_env: str | None = None,
    verify_ssl: bool = True,
    ca_cert: str | os.PathLike[str] | None = None,
    timeout_s: float = 5.0,
) -> KubeApiClient:
    """A client for an API server at a plain URL (a fixture server, ``kubectl proxy``).

    ``token_env`` names the environment variable holding a bearer token; the token itself
    never appears in the client's ``origin`` or in findings.
    """
    args = [repr(url)]
    args += [f"token_env={token_env!r}"] if token_env else []
    args += ["verify_ssl=False"] if not verify_ssl else []
    args += [f"ca_cert={str(ca_cert)!r}"] if ca_cert else []
    args += [f"timeout_s={timeout_s}"] if timeout_s != 5.0 else []
    cfg = k8s.Configuration(host=url.rstrip("/"))
    cfg.verify_ssl = verify_ssl
    if ca_cert:
        cfg.ssl_ca_cert = str(ca_cert)
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise ConfigError(
                f"environment variable {token_env} is not set", hint=f"export {token_env}=<token>"
            )
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
    return _finish(cfg, timeout_s, f"connect_kube_url({', '.join(args)})")


# -- transport ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Call:
    """What one request reads, for error messages and a finding's ``source``."""

    verb: str
    resource: str  # RBAC resource: "pods", "pods/log", "replicasets"
    group: str  # "" for the core API
    namespace: str
    path: str
    query: Mapping[str, Any]

    def target(self, api: k8s.ApiClient) -> str:
        """The URL requested: host (with any path prefix, without credentials), path, query."""
        parts = urlsplit(str(api.configuration.host or "").rstrip("/"))
        base = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"
        query = {k: v for k, v in self.query.items() if v not in (None, False)}
        qs = urlencode({k: str(v).lower() if v is True else v for k, v in query.items()})
        return f"{base}{quote(self.path)}" + (f"?{qs}" if qs else "")

    def url(self, api: k8s.ApiClient) -> str:
        """``GET <target>``, for a finding's ``source``."""
        return f"GET {self.target(api)}"


def _timeout(api: k8s.ApiClient, timeout_s: float | None) -> float:
    return float(timeout_s if timeout_s is not None else getattr(api, "timeout_s", 5.0))


def _status_message(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return str(json.loads(body).get("message", "")) if body else ""
    except (ValueError, AttributeError):
        return str(body)[:200]


def _api_error(status: int, body: Any, reason: Any, call: _Call, api: k8s.ApiClient) -> Exception:
    """The typed error for an HTTP error status (the API server's ``Status`` message kept)."""
    message = _status_message(body) or str(reason or "")
    source = call.url(api)
    group = call.group or "core"
    if status == 403:
        return SourceUnavailableError(
            f"forbidden: RBAC does not allow '{call.verb}' on '{call.resource}' (API group "
            f"{group}) in namespace {call.namespace}: {message}",
            hint=f"Grant verb '{call.verb}' on '{call.resource}' to this identity ({RBAC_HINT})",
            source=source,
        )
    if status == 401:
        return SourceUnavailableError(
            f"unauthorized: the API server rejected the credentials ({message})",
            hint="Refresh the kubeconfig credentials or the service-account token",
            source=source,
        )
    if status == 404 and call.group == "metrics.k8s.io" and "could not find" in message:
        return SourceUnavailableError(
            "the metrics.k8s.io API is not served (is metrics-server installed?)",
            hint="Install metrics-server, or read memory from Prometheus instead",
            source=source,
        )
    if status in (400, 404, 422):
        return QueryError(f"HTTP {status}: {message}", source=source)
    return SourceUnavailableError(f"HTTP {status or 'error'}: {message}", source=source)


def _network_error(exc: Exception, call: _Call, api: k8s.ApiClient, timeout_s: float) -> Exception:
    reason = getattr(exc, "reason", None) or exc
    host = str(api.configuration.host)
    timeouts = (urllib3.exceptions.TimeoutError, TimeoutError)
    refused = isinstance(reason, urllib3.exceptions.NewConnectionError)  # subclasses a timeout
    timed_out = isinstance(reason, timeouts) or isinstance(exc, timeouts) or "timed out" in str(exc)
    if timed_out and not refused:
        return SourceTimeoutError(
            f"the Kubernetes API at {host} did not answer within {timeout_s:g} s",
            hint="Check the API server / network path; raise timeout_s only if it is merely slow",
            source=call.url(api),
        )
    text = str(reason)
    if "Connection refused" in text:
        text = "connection refused"
    return SourceUnavailableError(
        f"the Kubernetes API at {host} is unreachable: {text}",
        hint="Check the kubeconfig context / that the API server is up",
        source=call.url(api),
    )


def _request(
    api: k8s.ApiClient, call: _Call, timeout_s: float | None, *, text: bool = False
) -> Any:
    """One GET through the client's REST layer with a timeout; parsed JSON (or text).

    Uses the client's configuration (TLS, client certificates, bearer token with its refresh
    hook for exec/OIDC kubeconfigs, proxy) but not its generated API classes: importing
    ``CoreV1Api`` alone builds ~250 pydantic models, 2–4 s on a 2-core machine, and kubernetes
    ≥ 37 models reject fields a newer API server adds.
    """
    limit = _timeout(api, timeout_s)
    headers = {**api.default_headers, "Accept": "*/*" if text else "application/json"}
    for auth in api.configuration.auth_settings().values():
        if auth.get("in") == "header" and auth.get("value"):
            headers[auth["key"]] = auth["value"]
    try:
        # a (connect, read) pair: kubernetes < 30 silently ignores a float timeout
        resp = api.rest_client.request(  # type: ignore[no-untyped-call]
            "GET", call.target(api), headers=headers, _request_timeout=(limit, limit)
        )
        raw = resp.data if resp.data is not None else resp.read()
    except ApiException as exc:  # clients before 35 raise for HTTP errors in the REST layer
        raise _api_error(int(exc.status or 0), exc.body, exc.reason, call, api) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _network_error(exc, call, api, limit) from exc
    if not 200 <= int(resp.status) < 300:
        raise _api_error(int(resp.status), raw, resp.reason, call, api)
    body = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    if text:  # (clients before 35 hand back str, later ones bytes)
        return body
    try:
        return json.loads(body)
    except ValueError as exc:
        raise SourceUnavailableError(
            f"the Kubernetes API at {api.configuration.host} answered with something that is "
            f"not JSON: {body[:80]!r}",
            source=call.url(api),
        ) from exc


def _items(body: Any, call: _Call, api: k8s.ApiClient) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
        raise SourceUnavailableError(
            f"unexpected answer shape: {str(body)[:80]}", source=call.url(api)
        )
    return list(body.get("items") or [])


def parse_time(value: str | None) -> dt.datetime | None:
    """An API timestamp (``2026-11-23T23:05:12Z``) as an aware UTC datetime; None stays None."""
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(dt.UTC)


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity in base units: ``"250m"`` → 0.25 cores, ``"512Mi"`` → 536870912."""
    try:
        return float(
            _k8s_parse_quantity(  # type: ignore[no-untyped-call]
                value if not isinstance(value, float) else Decimal(value)
            )
        )
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from exc
