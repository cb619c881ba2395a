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
:class:`~eventsvc.media.facts.MediaError`): the derivers record them as DerivationFailed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
import weakref
from typing import Any, BinaryIO

import numpy as np

from eventsvc.core.errors import TransientError
from eventsvc.media.decode import ThumbSet
from eventsvc.media.facts import ExifFacts
from eventsvc.media.sandbox_child import recv_frame, send_frame
from eventsvc.media.sandbox_limits import (
    MIN_MEMORY_MB,
    DecodeFailed,
    DecodeLimits,
    death_cause,
    memory_message,
)
from eventsvc.media.sandbox_spawn import START_TIMEOUT, Child

__all__ = ["MIN_MEMORY_MB", "DecodeFailed", "DecodeLimits", "DecodeSandbox", "shared_sandbox"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ the pool


class DecodeSandbox:
    """A pool of up to ``limits.processes`` decoder children; thread-safe, blocking calls
    (run them in a worker thread from asyncio)."""

    def __init__(self, limits: DecodeLimits | None = None) -> None:
        self.limits = limits or DecodeLimits()
        self._idle: list[Child] = []
        self._busy: set[Child] = set()
        self._slots = threading.BoundedSemaphore(max(1, self.limits.processes))
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        """Notified when a prestarted child becomes idle (or fails to start)."""
        self._closed = False
        self._starting = 0
        self._idle_since: dict[Child, float] = {}
        self._retiring = False
        self.started = 0
        self.killed = 0
        self.retired = 0
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
                child = Child(self.limits)
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
                    self._park(child)
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
        wait = self.limits.timeout * 4 + START_TIMEOUT
        if not self._slots.acquire(timeout=wait):
            raise TransientError(f"no decoder process free for {wait:g}s (all busy)")
        try:
            child = self._checkout()
            return self._run(child, op, args, fd, payload)
        finally:
            self._slots.release()

    def _checkout(self) -> Child:
        with self._lock:
            if self._closed:
                raise TransientError("the decode sandbox is closed")
            if not self._idle and self._starting:  # one is on its way: no second start
                self._ready.wait_for(lambda: self._idle or not self._starting, START_TIMEOUT)
            while self._idle:
                child = self._idle.pop()
                self._idle_since.pop(child, None)
                if child.alive():
                    self._busy.add(child)
                    return child
                child.kill()
        child = Child(self.limits)  # outside the lock: it takes a while
        with self._lock:
            self.started += 1
            self._busy.add(child)
            if self._closed:
                self._busy.discard(child)
                child.close()
                raise TransientError("the decode sandbox is closed")
        return child

    def _checkin(self, child: Child, keep: bool) -> None:
        with self._lock:
            self._busy.discard(child)
            room = len(self._idle) + len(self._busy) < self.limits.processes
            if keep and room and not self._closed:
                self._park(child)
                return
        if keep:
            child.close()
        else:  # it exits by itself (out of memory): reap it
            child.kill()

    def _run(self, child: Child, op: str, args: dict[str, Any], fd: int | None,
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
            raise DecodeFailed(*death_cause(self._discard(child), limits)) from exc
        child.used += 1
        if not head.get("ok"):
            kind = str(head.get("kind", "undecodable"))
            self._checkin(child, keep=kind != "memory")
            if kind == "memory":
                raise DecodeFailed(kind, memory_message(limits, head.get("error")))
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

    def _send(self, child: Child, header: dict[str, Any], payload: bytes, fd: int | None) -> Child:
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
                    raise DecodeFailed(*death_cause(code, self.limits)) from exc
                child = self._checkout()
        raise AssertionError("unreachable")

    def _discard(self, child: Child) -> int | None:
        with self._lock:
            self._busy.discard(child)
            self.killed += 1
        code = child.kill()
        log.warning("decoder process %d ended (status %s); a new one replaces it", child.pid, code)
        return code

    # ---- idle children exit (issue 18: no decoder memory while nothing changes)

    def _park(self, child: Child) -> None:
        """Make ``child`` idle (under the lock) and see that it exits when left idle."""
        self._idle.append(child)
        self._idle_since[child] = time.monotonic()
        if self.limits.idle_seconds > 0 and not self._retiring:
            self._retiring = True
            threading.Thread(target=self._retire_idle, daemon=True).start()

    def _retire_idle(self) -> None:
        """Close children idle for ``limits.idle_seconds``; ends when none is idle."""
        wait, done = self.limits.idle_seconds, False
        while not done:
            time.sleep(max(0.05, wait))
            now = time.monotonic()
            with self._lock:
                old = [
                    c for c in self._idle
                    if now - self._idle_since.get(c, now) >= self.limits.idle_seconds
                ]  # fmt: skip
                for child in old:
                    self._idle.remove(child)
                    self._idle_since.pop(child, None)
                self.retired += len(old)
                if not self._idle or self._closed:
                    self._retiring, done = False, True
                else:
                    oldest = min(self._idle_since.get(c, now) for c in self._idle)
                    wait = oldest + self.limits.idle_seconds - now
            for child in old:
                log.debug("decoder process %d was idle %.0f s: it exits", child.pid,
                          self.limits.idle_seconds)  # fmt: skip
                child.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children = [*self._idle, *self._busy]
            self._idle.clear()
            self._idle_since.clear()
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
