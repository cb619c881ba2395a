"""Bounded decoding: every decode of untrusted image bytes runs in a child process with a
pixel budget (checked from the header first), an address-space limit and a time limit.

:class:`DecodeSandbox` keeps a small pool of long-lived children (``python -c``, started
through ``subprocess`` from one dedicated thread: no fork of our threaded asyncio
process, and ``PR_SET_PDEATHSIG`` stays tied to a thread that lives as long as the
process). A job hands the child an open file descriptor over the UNIX socket
(``SCM_RIGHTS``: no copy of the file through the parent, and the child reads it with
``pread``, so the caller's offset is untouched) or, for uploads, the bytes themselves.

A child over the limits is handled so the parent never holds the pixels:

* header over ``decode_max_pixels``: refused before decoding (``kind='budget'``);
* allocation over ``decode_max_memory_mb``: ``MemoryError`` in the child, which replies
  and exits (``kind='memory'``); a child that dies instead is reported likewise;
* slower than ``decode_timeout``: the child is killed (SIGKILL) and replaced
  (``kind='timeout'``).

Those are :class:`DecodeFailed` (a :class:`~eventsvc.core.errors.PermanentError` and a
:class:`~eventsvc.media.exif.MediaError`): the derivers record them as DerivationFailed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from eventsvc.core.errors import ConfigError, PermanentError, TransientError
from eventsvc.media.decode import ThumbSet
from eventsvc.media.exif import ExifFacts, MediaError
from eventsvc.media.sandbox_child import EXIT_MEMORY, recv_frame, send_frame

__all__ = ["MIN_MEMORY_MB", "DecodeFailed", "DecodeLimits", "DecodeSandbox", "shared_sandbox"]

log = logging.getLogger(__name__)

MIN_MEMORY_MB = 256
"""The smallest decode_max_memory_mb accepted (0 aside: no limit)."""

_START_TIMEOUT = 60.0
"""Seconds a new child may take to import its libraries and say hello (busy machines)."""


class DecodeFailed(PermanentError, MediaError):
    """A decode refused or stopped by the sandbox: ``kind`` is 'budget', 'memory',
    'timeout', 'crashed' or 'undecodable'."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_pixels: int = 64_000_000
    memory_mb: int = 1024
    timeout: float = 60.0
    processes: int = 2

    @classmethod
    def from_settings(cls, settings: Any) -> DecodeLimits:
        """The limits of ``settings``; ConfigError for a memory limit no decoder fits in."""
        if 0 < int(settings.decode_max_memory_mb) < MIN_MEMORY_MB:
            raise ConfigError(
                f"decode_max_memory_mb={settings.decode_max_memory_mb} is too small: at least "
                f"{MIN_MEMORY_MB} (a decoder process takes ~130 MB before decoding), or 0"
            )
        return cls(
            max_pixels=int(settings.decode_max_pixels),
            memory_mb=int(settings.decode_max_memory_mb),
            timeout=float(settings.decode_timeout),
            processes=max(1, int(settings.decode_processes or os.cpu_count() or 1)),
        )


# ------------------------------------------------------------------ spawning thread


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


class _Child:
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
                return subprocess.Popen(
                    args, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, env=env, close_fds=True,
                )  # fmt: skip
            finally:
                theirs.close()

        try:
            self.proc = _spawner.run(spawn, _START_TIMEOUT)
        except BaseException:
            ours.close()  # a child started late reads EOF and exits
            raise
        self.sock = ours
        self.used = 0
        try:
            ours.settimeout(_START_TIMEOUT)
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


def _memory_message(limits: DecodeLimits, detail: object = None) -> str:
    text = f"over the decode memory limit of {limits.memory_mb} MB (EVENTSVC_DECODE_MAX_MEMORY_MB)"
    detail = str(detail or "").strip()
    return f"{text}: {detail}" if detail and detail != "MemoryError:" else text


def _death(code: int | None, limits: DecodeLimits) -> tuple[str, str]:
    if code == EXIT_MEMORY:
        return "memory", _memory_message(limits)
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return "crashed", (
            f"the decoder process died ({name}), possibly at the memory limit of "
            f"{limits.memory_mb} MB (EVENTSVC_DECODE_MAX_MEMORY_MB)"
        )
    return "crashed", f"the decoder process exited (status {code})"


# ------------------------------------------------------------------ the pool


class DecodeSandbox:
    """A pool of up to ``limits.processes`` decoder children; thread-safe, blocking calls
    (run them in a worker thread from asyncio)."""

    def __init__(self, limits: DecodeLimits | None = None) -> None:
        self.limits = limits or DecodeLimits()
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._slots = threading.BoundedSemaphore(max(1, self.limits.processes))
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        """Notified when a prestarted child becomes idle (or fails to start)."""
        self._closed = False
        self._starting = 0
        self.started = 0
        self.killed = 0
        _live.add(self)

    # ---- jobs

    def thumbnails(
        self, source: int | bytes | BinaryIO, *, raw: bool = False, video: bool = False
    ) -> ThumbSet:
        """Thumbnails (JPEG bytes), upright size and perceptual hashes of an image, a
        RAW's embedded preview (``raw``) or a video's poster frame (``video``)."""
        head, blobs = self._call("video" if video else "thumbs", source, {"raw": raw})
        names = [str(n) for n in head["names"]]
        return ThumbSet(dict(zip(names, blobs, strict=True)), int(head["width"]),
                        int(head["height"]), str(head["phash"]), str(head["dhash"]))  # fmt: skip

    def exif(self, fd: int, *, video: bool = False) -> ExifFacts:
        """EXIF / container facts (exifread, Pillow and pillow-heif headers, PyAV probe)
        read in a child: no parser of an untrusted file runs in the caller's process."""
        head, _ = self._call("exif", fd, {"video": video})
        facts = dict(head["facts"])
        known = {f.name for f in dataclasses.fields(ExifFacts)}
        facts = {k: v for k, v in facts.items() if k in known}
        facts["warnings"] = tuple(str(w) for w in facts.get("warnings") or ())
        return ExifFacts(**facts)

    def faces_image(
        self, source: int | bytes | BinaryIO, max_edge: int, *, raw: bool = False
    ) -> np.ndarray:
        return self._array("faces", source, {"max_edge": int(max_edge), "raw": raw})

    def clip_image(
        self, source: int | bytes | BinaryIO, max_edge: int, *, raw: bool = False
    ) -> np.ndarray:
        return self._array("clip", source, {"max_edge": int(max_edge), "raw": raw})

    def wire_image(self, data: bytes) -> np.ndarray:
        return self._array("wire", data, {})

    def ping(self) -> dict[str, Any]:
        head, _ = self._call("ping", b"", {})
        return head

    def prestart(self, n: int = 1) -> None:
        """Start up to ``n`` children in the background (not waiting), so the first jobs
        do not pay for a child's start (imports: ~0.3 s, more on a busy machine)."""
        with self._lock:
            missing = min(n, self.limits.processes) - len(self._idle) - len(self._busy)
            missing -= self._starting
            if missing <= 0 or self._closed:
                return
            self._starting += missing
        threading.Thread(target=self._start_idle, args=(missing,), daemon=True).start()

    def _start_idle(self, n: int) -> None:
        for _ in range(n):
            try:
                child = _Child(self.limits)
            except Exception as exc:  # the first job will start one and say why
                log.warning("could not prestart a decoder process: %s", exc)
                with self._lock:
                    self._starting -= 1
                    self._ready.notify_all()
                continue
            with self._lock:
                self._starting -= 1
                self.started += 1
                if self._closed:
                    closing = True
                else:
                    closing = False
                    self._idle.append(child)
                self._ready.notify()
            if closing:
                child.close()

    def pids(self) -> list[int]:
        with self._lock:
            return [c.pid for c in (*self._idle, *self._busy)]

    def _array(self, op: str, source: int | bytes | BinaryIO, args: dict[str, Any]) -> np.ndarray:
        head, blobs = self._call(op, source, args)
        shape = tuple(int(v) for v in head["shape"])
        arr = np.frombuffer(blobs[0], dtype=np.uint8)
        if arr.size != math.prod(shape) or len(shape) != 3 or shape[2] != 3:
            raise DecodeFailed("crashed", f"the decoder process sent a malformed image {shape}")
        return arr.reshape(shape)

    # ---- plumbing

    def _call(
        self, op: str, source: int | bytes | BinaryIO, args: dict[str, Any]
    ) -> tuple[dict[str, Any], list[bytes]]:
        fd: int | None = None
        payload = b""
        if isinstance(source, str | os.PathLike):
            raise TypeError("the sandbox takes an open file descriptor, not a path")
        if isinstance(source, int):
            fd = source
        elif isinstance(source, bytes | bytearray | memoryview):
            payload = bytes(source)
        else:
            try:
                fd = source.fileno()
            except (AttributeError, OSError):
                source.seek(0)
                payload = source.read()
        args = {**args, "max_pixels": self.limits.max_pixels}
        wait = self.limits.timeout * 4 + _START_TIMEOUT
        if not self._slots.acquire(timeout=wait):
            raise TransientError(f"no decoder process free for {wait:g}s (all busy)")
        try:
            child = self._checkout()
            return self._run(child, op, args, fd, payload)
        finally:
            self._slots.release()

    def _checkout(self) -> _Child:
        with self._lock:
            if self._closed:
                raise TransientError("the decode sandbox is closed")
            if not self._idle and self._starting:  # one is on its way: no second start
                self._ready.wait_for(lambda: self._idle or not self._starting, _START_TIMEOUT)
            while self._idle:
                child = self._idle.pop()
                if child.alive():
                    self._busy.add(child)
                    return child
                child.kill()
        child = _Child(self.limits)  # outside the lock: it takes a while
        with self._lock:
            self.started += 1
            self._busy.add(child)
            if self._closed:
                self._busy.discard(child)
                child.close()
                raise TransientError("the decode sandbox is closed")
        return child

    def _checkin(self, child: _Child, keep: bool) -> None:
        with self._lock:
            self._busy.discard(child)
            room = len(self._idle) + len(self._busy) < self.limits.processes
            if keep and room and not self._closed:
                self._idle.append(child)
                return
        if keep:
            child.close()
        else:  # it exits by itself (out of memory): reap it
            child.kill()

    def _run(self, child: _Child, op: str, args: dict[str, Any], fd: int | None,
             payload: bytes) -> tuple[dict[str, Any], list[bytes]]:  # fmt: skip
        limits = self.limits
        deadline = time.monotonic() + limits.timeout
        child = self._send(child, {"op": op, "args": args}, payload, fd)
        try:
            child.sock.settimeout(max(0.001, deadline - time.monotonic()))
            head, blob, _ = recv_frame(child.sock, max_blob=limits.max_pixels * 3 + (64 << 20))
        except TimeoutError:
            self._discard(child)
            raise self._timeout() from None
        except (OSError, EOFError, ValueError) as exc:
            raise DecodeFailed(*_death(self._discard(child), limits)) from exc
        child.used += 1
        if not head.get("ok"):
            kind = str(head.get("kind", "undecodable"))
            self._checkin(child, keep=kind != "memory")
            if kind == "memory":
                raise DecodeFailed(kind, _memory_message(limits, head.get("error")))
            raise DecodeFailed(kind, str(head.get("error") or "cannot decode"))
        self._checkin(child, keep=True)
        blobs = _split(blob, head)
        return head, blobs

    def _timeout(self) -> DecodeFailed:
        return DecodeFailed(
            "timeout",
            f"decode timeout: still decoding after {self.limits.timeout:g}s "
            "(EVENTSVC_DECODE_TIMEOUT); the decoder process was killed",
        )

    def _send(
        self, child: _Child, header: dict[str, Any], payload: bytes, fd: int | None
    ) -> _Child:
        """Send a job (to the child returned). A child found dead before it got the job
        (killed while idle) is replaced once: that is no fault of this file."""
        for attempt in (0, 1):
            child.sock.settimeout(self.limits.timeout)
            try:
                send_frame(child.sock, header, [payload] if payload else [], fd)
                return child
            except TimeoutError:
                self._discard(child)
                raise self._timeout() from None
            except OSError as exc:
                code = self._discard(child)
                if attempt:
                    raise DecodeFailed(*_death(code, self.limits)) from exc
                child = self._checkout()
        raise AssertionError("unreachable")

    def _discard(self, child: _Child) -> int | None:
        with self._lock:
            self._busy.discard(child)
            self.killed += 1
        code = child.kill()
        log.warning("decoder process %d ended (status %s); a new one replaces it", child.pid, code)
        return code

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children = [*self._idle, *self._busy]
            self._idle.clear()
        for child in children:
            child.close()

    def __enter__(self) -> DecodeSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(blob: bytes, head: dict[str, Any]) -> list[bytes]:
    out, pos = [], 0
    for n in head.get("lengths") or []:
        out.append(blob[pos : pos + int(n)])
        pos += int(n)
    if pos != len(blob):
        raise DecodeFailed("crashed", "the decoder process sent a malformed reply")
    return out


_live: weakref.WeakSet[DecodeSandbox] = weakref.WeakSet()
_shared: dict[DecodeLimits, DecodeSandbox] = {}
_shared_lock = threading.Lock()


def shared_sandbox(settings: Any, *, prestart: int = 0) -> DecodeSandbox:
    """The process's sandbox for these settings' limits (one pool shared by the media,
    faces and clip workers and the API: decoding is CPU-bound, more children than
    ``decode_processes`` would not go faster). ``prestart``: children to start now, in
    the background (a worker's concurrency)."""
    limits = DecodeLimits.from_settings(settings)
    with _shared_lock:
        box = _shared.get(limits)
        if box is None or box._closed:
            box = _shared[limits] = DecodeSandbox(limits)
    if prestart:
        box.prestart(prestart)
    return box


def _close_all() -> None:
    for box in list(_live):
        with contextlib.suppress(Exception):
            box.close()


import atexit  # noqa: E402

atexit.register(_close_all)
