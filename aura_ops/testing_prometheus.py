"""Real Prometheus and Alertmanager processes for tests, drills and local experiments.

::

    with start_prometheus(["http://127.0.0.1:8000/metrics"], rule_files=[rules]) as prom:
        query(prom.url, "up")
    with start_alertmanager({"route": {"receiver": "hook"}, "receivers": [...]}) as am:
        httpx.get(am.url + "/-/ready")

Each process listens on 127.0.0.1 on a free port, keeps its data, config and log in a work
directory (a temp dir removed on stop unless ``work_dir`` is given), is waited on with a bounded
readiness poll of ``/-/ready`` and is terminated (then killed) on exit -- also when the handle
is garbage-collected or the interpreter exits. Startup failures raise :class:`ServiceStartError`
with the tail of the process log.

Binaries: ``$AURA_OPS_PROMETHEUS_BIN`` or ``prometheus`` on PATH (Debian package ``prometheus``);
``$AURA_OPS_ALERTMANAGER_BIN``, ``prometheus-alertmanager`` (Debian package of that name) or
``alertmanager``. :func:`find_prometheus` / :func:`find_alertmanager` return None when missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import yaml

__all__ = [
    "LocalService",
    "ServiceStartError",
    "find_alertmanager",
    "find_prometheus",
    "free_port",
    "start_alertmanager",
    "start_prometheus",
]

_NULL_ALERTMANAGER_CONFIG: dict[str, Any] = {
    "route": {"receiver": "null"},
    "receivers": [{"name": "null"}],
}


class ServiceStartError(RuntimeError):
    """A Prometheus/Alertmanager process did not become ready; the message ends with its log."""


def find_prometheus() -> str | None:
    """Path of the Prometheus binary, or None."""
    return _find("AURA_OPS_PROMETHEUS_BIN", ("prometheus",))


def find_alertmanager() -> str | None:
    """Path of the Alertmanager binary (Debian names it ``prometheus-alertmanager``), or None."""
    return _find("AURA_OPS_ALERTMANAGER_BIN", ("prometheus-alertmanager", "alertmanager"))


def _find(env: str, names: Sequence[str]) -> str | None:
    explicit = os.environ.get(env)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in names:
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None
        )
        if found:
            return found
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kill(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=timeout_s)


@dataclasses.dataclass
class LocalService:
    """A running Prometheus or Alertmanager: its URL, files and process."""

    name: str
    url: str
    port: int
    work_dir: Path
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    _log: IO[bytes] | None = None
    _remove_dir: bool = False
    _finalizer: Any = None

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the process log, for assertion messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-max_chars:]

    def reload(self, *, timeout_s: float = 5.0) -> None:
        """Re-read the config and rule files (``POST /-/reload``; Prometheus and Alertmanager)."""
        resp = httpx.post(f"{self.url}/-/reload", timeout=timeout_s)
        if resp.status_code != 200:
            raise ServiceStartError(f"{self.name} reload failed: {resp.text}\n{self.log_tail()}")

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Terminate the process (kill after ``timeout_s``) and remove a temp work dir."""
        _kill(self.process, timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._remove_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> LocalService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_ready(service: LocalService, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceStartError(
                f"{service.name} exited with {service.process.returncode} before ready; "
                f"log {service.log_path}:\n{service.log_tail()}"
            )
        try:
            resp = httpx.get(f"{service.url}/-/ready", timeout=1.0)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}"
        time.sleep(0.1)
    raise ServiceStartError(
        f"{service.name} not ready within {timeout_s:g} s ({last}); "
        f"log {service.log_path}:\n{service.log_tail()}"
    )


def _launch(
    name: str,
    argv_for_port: Any,
    *,
    work_dir: Path,
    config_path: Path,
    remove_dir: bool,
    ready_timeout_s: float,
    attempts: int = 3,
) -> LocalService:
    """Run ``argv_for_port(port)`` on a free port, wait for ``/-/ready``; retry a port race."""
    log_path = work_dir / f"{name}.log"
    for attempt in range(attempts):
        port = free_port()
        log = open(log_path, "ab")  # noqa: SIM115 -- closed by LocalService.stop
        process = subprocess.Popen(
            argv_for_port(port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=work_dir,
            start_new_session=True,
        )
        service = LocalService(
            name,
            f"http://127.0.0.1:{port}",
            port,
            work_dir,
            config_path,
            log_path,
            process,
            log,
            remove_dir,
        )
        service._finalizer = weakref.finalize(service, _kill, process, 5.0)
        try:
            _wait_ready(service, ready_timeout_s)
            return service
        except ServiceStartError:
            in_use = "address already in use" in service.log_tail().lower()
            service._remove_dir = False
            service.stop()
            if not in_use or attempt == attempts - 1:
                if remove_dir:
                    shutil.rmtree(work_dir, ignore_errors=True)
                raise
    raise AssertionError("unreachable")


def _work_dir(work_dir: str | os.PathLike[str] | None, prefix: str) -> tuple[Path, bool]:
    if work_dir is None:
        return Path(tempfile.mkdtemp(prefix=prefix)), True
    path = Path(work_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path, False


def _scrape_configs(targets: Sequence[str] | Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """``["http://127.0.0.1:8000/metrics"]`` or ``{"job": ["host:port", ...]}`` → scrape_configs."""
    jobs = dict(targets) if isinstance(targets, Mapping) else {"aura": list(targets)}
    configs = []
    for job, urls in jobs.items():
        groups: dict[tuple[str, str], list[str]] = {}
        for url in urls:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            groups.setdefault((parts.scheme, parts.path or "/metrics"), []).append(parts.netloc)
        for i, ((scheme, path), hosts) in enumerate(sorted(groups.items())):
            configs.append(
                {
                    "job_name": job if i == 0 else f"{job}-{i}",
                    "scheme": scheme,
                    "metrics_path": path,
                    "static_configs": [{"targets": hosts}],
                }
            )
    return configs


def start_prometheus(
    targets: Sequence[str] | Mapping[str, Sequence[str]] = (),
    *,
    rule_files: Sequence[str | os.PathLike[str]] = (),
    alertmanager_urls: Sequence[str] = (),
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    work_dir: str | os.PathLike[str] | None = None,
    binary: str | None = None,
    ready_timeout_s: float = 30.0,
    extra_args: Sequence[str] = (),
) -> LocalService:
    """Start a real Prometheus scraping ``targets`` (URLs, ``host:port``, or ``{job: [...]}``).

    Rule files are referenced by absolute path; ``alertmanager_urls`` receive its alerts.
    ``/-/reload`` is enabled (:meth:`LocalService.reload`). Use as a context manager.
    """
    binary = binary or find_prometheus()
    if not binary:
        raise ServiceStartError("prometheus binary not found (apt-get install prometheus)")
    path, remove = _work_dir(work_dir, "aura-prometheus-")
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(Path(f).resolve()) for f in rule_files],
        "scrape_configs": _scrape_configs(targets),
    }
    if alertmanager_urls:
        hosts = [urlsplit(u if "://" in u else f"http://{u}").netloc for u in alertmanager_urls]
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": hosts}]}]}
    config_path = path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    (path / "data").mkdir(exist_ok=True)

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            *extra_args,
        ]

    return _launch(
        "prometheus",
        argv,
        work_dir=path,
        config_path=config_path,
        remove_dir=remove,
        ready_timeout_s=ready_timeout_s,
    )


def start_alertmanager(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    work_dir: str | os.PathLike[str] | None = None,
    binary: str | None = None,
    ready_timeout_s: float = 30.0,
    extra_args: Sequence[str] = (),
) -> LocalService:
    """Start a real Alertmanager (clustering off) with ``config``.

    ``config`` is a mapping, YAML text, or a :class:`~pathlib.Path` to a config file; None is a
    single receiver that drops everything. Use as a context manager.
    """
    binary = binary or find_alertmanager()
    if not binary:
        raise ServiceStartError(
            "alertmanager binary not found (apt-get install prometheus-alertmanager)"
        )
    path, remove = _work_dir(work_dir, "aura-alertmanager-")
    config_path = path / "alertmanager.yml"
    if isinstance(config, os.PathLike):
        config_path.write_text(Path(config).read_text())
    elif isinstance(config, str):
        config_path.write_text(config)
    else:
        config_path.write_text(yaml.safe_dump(dict(config or _NULL_ALERTMANAGER_CONFIG)))
    (path / "data").mkdir(exist_ok=True)

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            *extra_args,
        ]

    return _launch(
        "alertmanager",
        argv,
        work_dir=path,
        config_path=config_path,
        remove_dir=remove,
        ready_timeout_s=ready_timeout_s,
    )
