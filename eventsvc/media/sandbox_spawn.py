"""One decoder child process of the sandbox, seen from the parent (:class:`Child`), and
the long-lived thread that starts every child (:class:`_Spawner`: ``PR_SET_PDEATHSIG``
is tied to the thread that forked). Used by :mod:`eventsvc.media.sandbox` only."""

from __future__ import annotations

import contextlib
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from eventsvc.core.errors import ConfigError, TransientError
from eventsvc.media.sandbox_child import recv_frame
from eventsvc.media.sandbox_limits import DecodeLimits

__all__ = ["START_TIMEOUT", "Child"]

START_TIMEOUT = 60.0
"""Seconds a new child may take to import its libraries and say hello (busy machines)."""


class _Spawner:
    """One long-lived daemon thread that starts every child: PR_SET_PDEATHSIG fires when
    the *thread* that forked dies, so it must not be a short-lived pool thread."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], Any], timeout: float) -> Any:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="decode-spawner", daemon=True
                )
                self._thread.start()
        answer: queue.Queue[Any] = queue.Queue(1)
        self._jobs.put((fn, answer))
        try:
            ok, value = answer.get(timeout=timeout)
        except queue.Empty:
            raise TransientError(f"could not start a decoder process in {timeout:g}s") from None
        if not ok:
            raise value
        return value

    def _loop(self) -> None:
        while True:
            fn, answer = self._jobs.get()
            try:
                answer.put((True, fn()))
            except BaseException as exc:
                answer.put((False, exc))


_spawner = _Spawner()


def _package_root() -> str:
    import eventsvc

    return os.path.dirname(os.path.dirname(os.path.abspath(eventsvc.__file__)))


_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from eventsvc.media.sandbox_child import main; main(sys.argv[2:])"
)


class Child:
    """One decoder process and our end of its socket."""

    def __init__(self, limits: DecodeLimits) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        alarm_s = math.ceil(limits.timeout) + 10
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", MALLOC_ARENA_MAX="2")  # fmt: skip
        args = [sys.executable, "-c", _BOOT, _package_root(), str(theirs.fileno()),
                str(os.getpid()), str(limits.memory_mb), str(alarm_s)]  # fmt: skip

        def spawn() -> subprocess.Popen[bytes]:
            try:  # their end is closed here, after the fork: never reused too early
                # process_group=0: a terminal's ^C (sent to our group) never reaches a
                # child still starting, before it ignores SIGINT; its life is tied to ours
                # (PR_SET_PDEATHSIG, EOF on its socket), and we end it.
                return subprocess.Popen(
                    args, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, env=env, close_fds=True, process_group=0,
                )  # fmt: skip
            finally:
                theirs.close()

        try:
            self.proc = _spawner.run(spawn, START_TIMEOUT)
        except BaseException:
            ours.close()  # a child started late reads EOF and exits
            raise
        self.sock = ours
        self.used = 0
        try:
            ours.settimeout(START_TIMEOUT)
            hello, _, _ = recv_frame(ours)
        except (OSError, EOFError, ValueError) as exc:
            self.kill()
            raise TransientError(f"the decoder process did not start: {exc}") from exc
        self.pid = int(hello["pid"])
        self.baseline_mb = int(hello.get("vm_kb", 0)) / 1024
        if limits.memory_mb and self.baseline_mb > limits.memory_mb * 0.75:
            self.kill()
            raise ConfigError(
                f"decode_max_memory_mb={limits.memory_mb} is too small: a decoder process "
                f"takes {self.baseline_mb:.0f} MB of address space before decoding anything"
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int | None:
        with contextlib.suppress(OSError):
            self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.sock.close()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # unkillable (D state): leave it to the kernel
            return None

    def close(self) -> None:
        """Polite end: EOF makes an idle child exit; a busy or stuck one is killed."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(OSError):
            self.sock.close()
