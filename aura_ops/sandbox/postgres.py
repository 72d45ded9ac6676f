"""A real PostgreSQL for the sandbox and the tests.

Order of preference:

1. ``AURA_OPS_TEST_DSN`` (or the ``dsn`` argument): an existing server, used as is.
2. An embedded server from ``pgserver`` (PostgreSQL binaries shipped on PyPI), in a data
   directory of ours, reached over a Unix socket. No root, no system packages.
3. Opt-in, ``prefer="system"``: the Debian PostgreSQL binaries (apt package ``postgresql``,
   ``/usr/lib/postgresql/*/bin``) started with ``shared_preload_libraries=pg_stat_statements``,
   which the pgserver wheel does not ship. Trust auth on a private Unix socket (the DSN) and
   ``scram-sha-256`` on ``127.0.0.1:<tcp_port>`` for roles that have a password. As root the
   server runs as the ``postgres`` (else ``nobody``) user. ``CREATE EXTENSION pg_stat_statements``
   is left to the caller. :func:`start_standby` adds a streaming replica of such a server.

The handle's :attr:`Postgres.dsn` is a secret-free libpq URI for embedded servers (trust auth
on a private socket directory); for a given DSN it is the caller's value.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import glob
import os
import pwd
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from aura_ops.sandbox.ports import free_port

__all__ = ["Postgres", "start_postgres", "start_standby", "system_postgres_bindir"]


@dataclasses.dataclass
class Postgres:
    """A running PostgreSQL: its DSN, what started it, and how to stop it."""

    dsn: str
    kind: str  # "pgserver" | "system" | "external"
    data_dir: Path | None = None
    _stop: Callable[[], None] | None = None
    tcp_port: int | None = None  # "system" only: 127.0.0.1 port with password auth

    def stop(self) -> None:
        """Stop the server if we started it; an external server is left alone."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            with contextlib.suppress(Exception):
                stop()

    def __enter__(self) -> Postgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_postgres(
    data_dir: str | os.PathLike[str], *, dsn: str | None = None, prefer: str = "pgserver"
) -> Postgres:
    """Start (or reuse) a PostgreSQL server whose data lives in ``data_dir``.

    ``dsn`` or the ``AURA_OPS_TEST_DSN`` environment variable selects an existing server instead.
    ``prefer="system"`` starts the Debian binaries with pg_stat_statements preloaded (raises
    ``RuntimeError`` naming the apt package when they are not installed).
    """
    dsn = dsn or os.environ.get("AURA_OPS_TEST_DSN") or None
    if dsn:
        return Postgres(dsn=dsn, kind="external")
    if prefer not in ("pgserver", "system"):
        raise ValueError(f"prefer must be 'pgserver' or 'system', not {prefer!r}")
    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    if prefer == "system":
        return _start_system(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import pgserver

        server = pgserver.get_server(path, cleanup_mode="stop")
    return Postgres(dsn=server.get_uri(), kind="pgserver", data_dir=path, _stop=server.cleanup)


def system_postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` that has ``initdb`` and ``pg_ctl``."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").exists()]
    if not found:
        return None
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run the server as when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, but neither a 'postgres' nor a 'nobody' user exists")


def _give_to(path: Path, user: pwd.struct_passwd | None) -> None:
    """Make ``path`` owned by ``user`` (mode 0700) and its parents traversable by it."""
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o700)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _pg(bindir: Path, user: pwd.struct_passwd | None, *args: str) -> None:
    """Run a PostgreSQL tool (as ``user`` when given); a failure raises with its output."""
    proc = subprocess.run(  # noqa: S603 - fixed binaries, our own arguments
        [str(bindir / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        check=False,
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr or proc.stdout}")


def start_standby(primary: Postgres, data_dir: str | os.PathLike[str]) -> Postgres:
    """A streaming replica of a ``kind="system"`` primary (``pg_basebackup -R``), same options."""
    if primary.kind != "system":
        raise ValueError("start_standby needs a primary started with prefer='system'")
    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return _start_system(path, replica_of=primary.dsn)


def _start_system(path: Path, *, replica_of: str | None = None) -> Postgres:
    bindir = system_postgres_bindir()
    if bindir is None:
        raise RuntimeError(
            "prefer='system' needs the Debian PostgreSQL server: apt-get install postgresql"
        )
    user = _run_as()
    _give_to(path, user)
    port = free_port()
    sock_dir = path
    if len(str(path)) > 90:  # Unix socket paths are limited to ~107 bytes
        sock_dir = Path(tempfile.mkdtemp(prefix="aura-pg-"))
        _give_to(sock_dir, user)
    if replica_of and not (path / "PG_VERSION").exists():
        _pg(bindir, user, "pg_basebackup", "-D", str(path), "-R", "-X", "stream", "-c", "fast",
            "-d", replica_of)  # fmt: skip
    elif not (path / "PG_VERSION").exists():
        _pg(bindir, user, "initdb", "-D", str(path), "-U", "postgres", "-E", "UTF8",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")  # fmt: skip
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sock_dir} "
        "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
    )
    _pg(bindir, user, "pg_ctl", "-D", str(path), "-l", str(path / "server.log"), "-w",
        "-t", "60", "-o", options, "start")  # fmt: skip

    def stop() -> None:
        _pg(bindir, user, "pg_ctl", "-D", str(path), "-m", "fast", "-w", "-t", "30", "stop")

    uri = f"postgresql://postgres@/postgres?host={quote(str(sock_dir))}&port={port}"
    handle = Postgres(dsn=uri, kind="system", data_dir=path, _stop=stop, tcp_port=port)
    atexit.register(handle.stop)
    return handle
