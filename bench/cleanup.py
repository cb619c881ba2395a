"""Ctrl-C and SIGTERM for benchmarks: stop promptly, end every child, leave no scratch.

``python -m bench NAME`` runs the benchmark inside :func:`session`, which

* makes SIGTERM behave like SIGINT (``KeyboardInterrupt`` in the main thread; inside
  ``asyncio.run`` the main task is cancelled first, so ``finally`` blocks and ``async
  with`` exits run, then ``KeyboardInterrupt`` leaves ``asyncio.run``);
* points ``tempfile`` (and ``$TMPDIR`` of every child process) at a private run
  directory under the caller's ``$TMPDIR``: a ``tempfile.TemporaryDirectory()``,
  ``mkdtemp()`` or ``scratch_dir()`` of the bench, or a temp file of any child, lands
  there. Caches meant to outlive a run go under :func:`cache_dir` (the caller's
  ``$TMPDIR``) instead (so does multiprocessing's own ``pymp-`` dir, which its exit
  hook removes);
* becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``): a grandchild whose parent died
  (``eventsvc up``'s nats-server, a decoder child) is re-parented to us, not to init;
* on the way out, after the bench's own ``finally`` blocks ran: SIGTERM to every
  remaining child process, SIGKILL to whatever of the whole tree is left after a grace
  period, reaps them, and removes the registered directories and the run directory.

A second ^C while the bench's own ``finally`` blocks run skips to that final sweep; so
does a bench still stopping :data:`ESCALATE_S` after the signal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

__all__ = [
    "EXIT_SIGNAL",
    "cache_dir",
    "forget_dir",
    "interrupted_by",
    "kill_descendants",
    "register_dir",
    "session",
]

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""Exit status of an interrupted bench: 128 + the signal number, as a shell reports it."""

GRACE_S = 3.0
"""Seconds children get between SIGTERM and SIGKILL in the final sweep."""

ESCALATE_S = 10.0
"""Seconds the bench's own ``finally`` blocks get after the signal: then it is as if ^C
came again (``KeyboardInterrupt`` in the main thread, every 2 s) until the sweep starts."""

_dirs: set[Path] = set()
_cache_parent: Path | None = None
_signal: signal.Signals | None = None
_seen: set[int] = set()
"""Signals caught during the session (the wakeup fd of Python's C-level handler: it
sees a SIGINT that asyncio.run's handler turned into a cancellation, even when the
code it cancelled raised something else than CancelledError)."""


def register_dir(path: Path) -> None:
    """Remove ``path`` (recursively) in the final sweep unless the bench did already."""
    _dirs.add(Path(path))


def forget_dir(path: Path) -> None:
    _dirs.discard(Path(path))


def cache_dir() -> Path:
    """Where a cache that should outlive this run goes (the caller's ``$TMPDIR``, not
    the run directory that :func:`session` removes)."""
    return _cache_parent if _cache_parent is not None else Path(tempfile.gettempdir())


def interrupted_by() -> signal.Signals | None:
    """The signal (SIGTERM or SIGINT) that interrupted the last session, if any."""
    if _signal is not None:
        return _signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        if sig in _seen:
            return sig
    return None


def _watch(fd: int, sweeping: threading.Event) -> None:
    """Reads the signals off the wakeup pipe; ESCALATE_S after the first, interrupts the
    main thread again (every 2 s) until the final sweep begins."""
    import select

    first: float | None = None
    while not sweeping.is_set():
        timeout = 0.5 if first is None else 0.2
        with contextlib.suppress(OSError, ValueError):
            if select.select([fd], [], [], timeout)[0]:
                _seen.update(os.read(fd, 512))
        if first is None and _seen & {signal.SIGINT, signal.SIGTERM}:
            first = time.monotonic()
        if first is not None and time.monotonic() - first > ESCALATE_S:
            if sweeping.is_set():
                return
            print(
                f"bench: still stopping after {ESCALATE_S:g}s: interrupting again",
                file=sys.stderr,
                flush=True,
            )
            # a real signal (interrupt_main would not end a blocking call such as sleep)
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            first += 2.0


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: note it, then do what SIGINT does now (asyncio.run's handler while it
    runs: cancel the main task; else ``KeyboardInterrupt``)."""
    global _signal
    if _signal is None:
        _signal = signal.Signals(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
        return
    raise KeyboardInterrupt


def _children_of(pid: int) -> list[int]:
    from bench.common import descendants

    return [p for p, _ in descendants(pid).items()]


def _direct_children() -> list[int]:
    try:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
            direct = [int(v) for v in f.read().split()]
    except OSError:
        direct = []
    # children forked from other threads are listed under those threads
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{os.getpid()}/task"):
            if int(tid) == os.getpid():
                continue
            with (
                contextlib.suppress(OSError, ValueError),
                open(f"/proc/{os.getpid()}/task/{tid}/children") as f,
            ):
                direct += [int(v) for v in f.read().split()]
    return sorted(set(direct))


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants(grace: float = GRACE_S) -> list[int]:
    """SIGTERM to our children, then SIGKILL to every descendant still there after
    ``grace`` seconds; reaps them. Returns the pids that had to be signalled."""
    signalled: list[int] = []
    for pid in _direct_children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap()
        if not _children_of(os.getpid()):  # zombies too: reaped, not left to init
            return signalled
        time.sleep(0.05)
    for pid in _live(_children_of(os.getpid())):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            signalled.append(pid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _reap()
        if not _children_of(os.getpid()):
            break
        time.sleep(0.05)
    return signalled


def _live(pids: list[int]) -> list[int]:
    """The pids that are not zombies."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            out.append(pid)
    return out


def _subreaper(on: bool) -> bool:
    """Set PR_SET_CHILD_SUBREAPER; returns whether it was set before."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        was = ctypes.c_int(0)
        libc.prctl(37, ctypes.byref(was), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
        libc.prctl(36, int(on), 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        return bool(was.value)
    except Exception:
        return False


@contextlib.contextmanager
def session(name: str, *, keep: bool = False) -> Iterator[Path]:
    """Run a bench inside: signals, a private run directory (yielded), the final sweep.
    ``keep`` (``--keep``) leaves the run directory and the registered ones in place."""
    global _cache_parent, _signal
    _signal = None
    _seen.clear()
    _cache_parent = Path(tempfile.gettempdir())
    run_dir = Path(tempfile.mkdtemp(prefix=f"eventsvc-bench-{name}-run-", dir=_cache_parent))
    saved_env = os.environ.get("TMPDIR")
    saved_tempdir = tempfile.tempdir
    # SIGINT keeps Python's default handler: asyncio.run only installs its own (cancel
    # the main task, then KeyboardInterrupt) when it finds that one.
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    old_term = signal.signal(signal.SIGTERM, _on_signal)
    was_subreaper = _subreaper(True)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    sweeping = threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(wake_r, sweeping), name="bench-signals", daemon=True
    )
    watcher.start()
    # multiprocessing's own temp dir (removed by its exit hook, which must find it): made
    # now, under the caller's $TMPDIR, not in the run directory we remove first
    import multiprocessing.util

    multiprocessing.util.get_temp_dir()
    os.environ["TMPDIR"] = str(run_dir)
    tempfile.tempdir = str(run_dir)
    if keep:  # said now: the result line must stay the last one
        print(f"bench: run directory {run_dir} (kept: --keep)", file=sys.stderr, flush=True)
    failed = False
    try:
        yield run_dir
    except BaseException:
        failed = True
        raise
    finally:
        # The sweep itself is short and bounded: no second interrupt in the middle of it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sweeping.set()
        watcher.join(timeout=2)
        try:
            killed = kill_descendants()
            if killed and failed:  # a clean run stays quiet
                print(
                    f"bench: ended {len(killed)} leftover child process(es)",
                    file=sys.stderr,
                    flush=True,
                )
            tempfile.tempdir = saved_tempdir
            if saved_env is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = saved_env
            if not keep:
                for d in sorted(_dirs, key=lambda p: len(p.parts), reverse=True):
                    shutil.rmtree(d, ignore_errors=True)
                shutil.rmtree(run_dir, ignore_errors=True)
            _dirs.clear()
            _cache_parent = None
        finally:
            signal.set_wakeup_fd(old_wakeup)
            os.close(wake_r)
            os.close(wake_w)
            _subreaper(was_subreaper)
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
