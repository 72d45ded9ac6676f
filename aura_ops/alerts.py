"""Alert payloads in: Alertmanager (webhook v4), Grafana alerting (v1) and PagerDuty V3 webhooks.

Each delivery is authenticated on its raw bytes, then parsed into :class:`Alert` records, one
per alert, all with the same shape whatever the sender::

    verify_bearer(headers.get("authorization", ""), tokens)          # Alertmanager
    verify_grafana_signature(body, signature, secrets, timestamp=ts)  # Grafana HMAC
    verify_pagerduty_signature(body, header, secrets)                 # PagerDuty v1=, rotation
    alerts = parse_alertmanager(decode_json(body))

An :class:`Alert` carries its ``episode``: the key under which repeats of the same alert are
recognised (``fingerprint`` + ``startsAt`` for Alertmanager and Grafana, the incident id for
PagerDuty). Routing the alerts to runbooks is :mod:`aura_ops.alert_routes`.

Bad input raises :class:`PayloadError` with the HTTP status a receiver should answer: 400 for
bytes that are not JSON, 422 for JSON of the wrong shape. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aura_ops.errors import AuraOpsError

__all__ = [
    "Alert",
    "PayloadError",
    "decode_json",
    "parse_alertmanager",
    "parse_grafana",
    "parse_pagerduty",
    "truncated_alerts",
    "verify_bearer",
    "verify_grafana_signature",
    "verify_pagerduty_signature",
]

#: Limits on one delivery; beyond them it is refused (422), never half-read.
MAX_ALERTS = 1000
MAX_LABELS = 64
MAX_LABEL_CHARS = 1024
MAX_ANNOTATION_CHARS = 16384
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: PagerDuty event types that start a run (when the incident has none yet) or resolve it.
PD_FIRING = frozenset({"incident.triggered", "incident.reopened"})
PD_RESOLVED = frozenset({"incident.resolved"})


class PayloadError(AuraOpsError):
    """A delivery that is not a valid payload. ``status`` is the HTTP answer (400 or 422)."""

    def __init__(self, message: str, *, status: int = 422, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Alert:
    """One alert from any sender, normalised.

    ``status`` is ``firing``, ``resolved``, or ``update`` (a PagerDuty event such as
    ``incident.acknowledged`` that changes nothing about the episode). ``episode`` identifies
    one occurrence of the alert: repeats share it, a re-fire after resolution gets a new one.
    """

    source: str
    status: str
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    episode: str
    fingerprint: str = ""
    url: str = ""
    event: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        d = dataclasses.asdict(self)
        d["labels"], d["annotations"] = dict(self.labels), dict(self.annotations)
        return d


# --- authentication (on the raw body, before any parsing) ------------------------------------


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def verify_bearer(authorization: str, tokens: Iterable[str]) -> bool:
    """Whether an ``Authorization: Bearer <token>`` header carries one of ``tokens``.

    Every token is compared in constant time (several are accepted during a rotation).
    """
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return False
    ok = False
    for token in tokens:
        ok |= bool(token) and _same(value.strip(), token)
    return ok


def _hmac_hex(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


def verify_grafana_signature(
    body: bytes,
    signature: str,
    secrets: Iterable[str],
    *,
    timestamp: str | None = None,
    max_skew_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """Grafana's webhook HMAC: hex(HMAC-SHA256(secret, [timestamp ":"] body)).

    With ``timestamp`` (the value of the configured timestamp header, Unix seconds) the signed
    data is prefixed with it and a timestamp further than ``max_skew_s`` from ``now`` is
    refused, so a captured delivery cannot be replayed later.
    """
    data = body
    if timestamp is not None:
        try:
            ts = int(timestamp.strip())
        except ValueError:
            return False
        if abs((time.time() if now is None else now) - ts) > max_skew_s:
            return False
        data = f"{ts}:".encode() + body
    sig = signature.strip().lower()
    ok = False
    for secret in secrets:
        ok |= bool(secret) and _same(_hmac_hex(secret, data), sig)
    return ok and bool(sig)


def verify_pagerduty_signature(body: bytes, header: str, secrets: Iterable[str]) -> bool:
    """PagerDuty's ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`` against any of ``secrets``.

    PagerDuty sends one signature per active secret while a secret is rotated; any match of any
    configured secret is accepted.
    """
    sigs = [s.strip()[3:].lower() for s in header.split(",") if s.strip().startswith("v1=")]
    ok = False
    for secret in secrets:
        expected = _hmac_hex(secret, body) if secret else ""
        for sig in sigs:
            ok |= bool(expected) and _same(expected, sig)
    return ok


# --- parsing ------------------------------------------------------------------------------


def decode_json(body: bytes) -> Any:
    """The JSON document in ``body``; :class:`PayloadError` (400) when it is not JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(f"body is not JSON: {type(exc).__name__}", status=400) from None


def _mapping(
    value: Any, what: str, *, max_items: int, max_chars: int, names: bool = True
) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PayloadError(f"{what} must be an object of strings")
    if len(value) > max_items:
        raise PayloadError(f"{what}: {len(value)} entries, at most {max_items} accepted")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise PayloadError(f"{what}.{key} must be a string, not {type(item).__name__}")
        if names and not LABEL_NAME.match(key):
            raise PayloadError(f"{what}: invalid name {key[:64]!r}")
        if len(item) > max_chars:
            raise PayloadError(f"{what}.{key}: value longer than {max_chars} characters")
        out[key] = item
    return out


def _time(value: Any, what: str) -> str:
    """An RFC 3339 time as sent (validated), or '' when absent."""
    if value in (None, ""):
        return ""
    from aura_ops.changes import parse_time

    if not isinstance(value, str):
        raise PayloadError(f"{what} must be an RFC 3339 time string")
    try:
        parse_time(value)
    except ValueError:
        raise PayloadError(f"{what}: {value[:64]!r} is not an RFC 3339 time") from None
    return value


def _fingerprint(labels: Mapping[str, str]) -> str:
    """A stable hash of a label set, for senders that omit ``fingerprint``."""
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _am_alert(item: Any, i: int, source: str) -> Alert:
    if not isinstance(item, Mapping):
        raise PayloadError(f"alerts[{i}] must be an object")
    labels = _mapping(
        item.get("labels"), f"alerts[{i}].labels", max_items=MAX_LABELS, max_chars=MAX_LABEL_CHARS
    )
    annotations = _mapping(
        item.get("annotations"),
        f"alerts[{i}].annotations",
        max_items=MAX_LABELS,
        max_chars=MAX_ANNOTATION_CHARS,
    )
    status = item.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"alerts[{i}].status must be 'firing' or 'resolved', not {status!r}")
    fingerprint = item.get("fingerprint") or _fingerprint(labels)
    if not isinstance(fingerprint, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", fingerprint):
        raise PayloadError(f"alerts[{i}].fingerprint must be a short hex string")
    starts_at = _time(item.get("startsAt"), f"alerts[{i}].startsAt")
    url = item.get("generatorURL") or item.get("dashboardURL") or ""
    return Alert(
        source=source,
        status=status,
        name=labels.get("alertname", ""),
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        episode=f"{source}:{fingerprint}:{starts_at}",
        fingerprint=fingerprint,
        url=url if isinstance(url, str) else "",
    )


def parse_alertmanager(doc: Any, *, source: str = "alertmanager") -> list[Alert]:
    """The alerts of an Alertmanager webhook (``"version": "4"``) payload.

    ``truncatedAlerts`` (alerts the sender dropped because of ``max_alerts``) is not an error
    here; :func:`truncated_alerts` reports it so the receiver can record it.
    """
    if not isinstance(doc, Mapping):
        raise PayloadError("payload must be a JSON object with an 'alerts' list")
    version = doc.get("version")
    expected = "1" if source == "grafana" else "4"
    if version is not None and str(version) != expected:
        raise PayloadError(
            f"unsupported {source} payload version {version!r}; expected {expected!r}",
            hint="use the default webhook body (no custom payload template)",
        )
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("payload has no 'alerts' list", hint=f"is this a {source} webhook?")
    if len(alerts) > MAX_ALERTS:
        raise PayloadError(f"{len(alerts)} alerts in one delivery; at most {MAX_ALERTS}")
    return [_am_alert(item, i, source) for i, item in enumerate(alerts)]


def parse_grafana(doc: Any) -> list[Alert]:
    """The alerts of a Grafana-managed alerting webhook (``"version": "1"``) payload."""
    return parse_alertmanager(doc, source="grafana")


def truncated_alerts(doc: Any) -> int:
    """How many alerts the sender left out of this delivery (``truncatedAlerts``), else 0."""
    value = doc.get("truncatedAlerts", 0) if isinstance(doc, Mapping) else 0
    return value if isinstance(value, int) and value > 0 else 0


def _summary(ref: Any) -> str:
    if isinstance(ref, Mapping):
        value = ref.get("summary") or ref.get("name") or ref.get("id") or ""
        return str(value)[:MAX_LABEL_CHARS]
    return ""


def _pd_labels(incident: Mapping[str, Any], event_type: str, title: str) -> dict[str, str]:
    labels = {
        "alertname": title,
        "event_type": event_type,
        "incident_id": str(incident["id"])[:64],
        "service": _summary(incident.get("service")),
        "urgency": str(incident.get("urgency") or "")[:64],
        "priority": _summary(incident.get("priority")),
        "incident_key": str(incident.get("incident_key") or "")[:MAX_LABEL_CHARS],
    }
    return {k: v for k, v in labels.items() if v}


def parse_pagerduty(doc: Any) -> list[Alert]:
    """The incident event of a PagerDuty V3 webhook as one :class:`Alert` (none for others).

    ``incident.triggered``/``incident.reopened`` are ``firing``, ``incident.resolved`` is
    ``resolved``; every other incident event is an ``update`` of the same episode (the
    incident id). Service events carry no alert.
    """
    event = doc.get("event") if isinstance(doc, Mapping) else None
    if not isinstance(event, Mapping):
        raise PayloadError("payload must be an object with an 'event' object")
    event_type, data = event.get("event_type"), event.get("data")
    if not isinstance(event_type, str) or not isinstance(data, Mapping):
        raise PayloadError("event.event_type (string) and event.data (object) are required")
    if event.get("resource_type") != "incident" and not event_type.startswith("incident."):
        return []
    incident = data if data.get("type", "incident") == "incident" else data.get("incident")
    if not isinstance(incident, Mapping) or not isinstance(incident.get("id"), str):
        raise PayloadError(f"{event_type}: event.data has no incident id")
    title = str(incident.get("title") or incident.get("summary") or "")[:MAX_LABEL_CHARS]
    status = "update"
    if event_type in PD_FIRING or event_type in PD_RESOLVED:
        status = "firing" if event_type in PD_FIRING else "resolved"
    url = incident.get("html_url") if isinstance(incident.get("html_url"), str) else ""
    started = incident.get("created_at") or event.get("occurred_at")
    return [
        Alert(
            source="pagerduty",
            status=status,
            name=title,
            labels=_pd_labels(incident, event_type, title),
            annotations={k: v for k, v in {"summary": title, "html_url": url}.items() if v},
            starts_at=_time(started, "event.data.created_at"),
            episode=f"pagerduty:{incident['id'][:64]}",
            fingerprint=incident["id"][:64],
            url=url or "",
            event=event_type,
        )
    ]
