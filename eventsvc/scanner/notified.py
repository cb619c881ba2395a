"""The scanner between ticks: file notifications, files still being written, deletions
judged in one window, and health another process published (a mixin of
:class:`~eventsvc.scanner.scanner.Scanner`)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Collection
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from eventsvc.core.health import Health
from eventsvc.core.ids import file_id as make_file_id
from eventsvc.core.settings import Library, Settings
from eventsvc.scanner.probe import probe
from eventsvc.scanner.settle import DeletionWindow, Settling
from eventsvc.scanner.state import ScanState
from eventsvc.scanner.walk import Excludes, WalkEntry, stat_one, walk
from eventsvc.scanner.watch import WHOLE_LIBRARY, Watcher, WatchStatus

if TYPE_CHECKING:
    from eventsvc.core.health import HealthFollower
    from eventsvc.core.log import EventLog
    from eventsvc.scanner.scanner import ScanReport

__all__ = ["Watching"]

log = logging.getLogger("eventsvc.scanner.scanner")


class Watching:
    """What :class:`Scanner` does between ticks (its attributes, set in its ``__init__``)."""

    event_log: EventLog
    libraries: list[Library]
    settings: Settings
    excludes: dict[str, Excludes]
    state: ScanState
    pending_missing: dict[str, deque[bytes]]
    watcher: Watcher | None
    follower: HealthFollower | None
    settling: dict[str, Settling]
    windows: dict[str, DeletionWindow]
    _locks: dict[str, asyncio.Lock]
    _timers: dict[tuple[str, str], asyncio.Task[None]]
    _background: bool

    # (defined by Scanner)
    _publish: Any
    _seen_event: Any
    _set_health: Any
    _drain_missing: Any
    _scan_library: Any

    # ------------------------------------------------------------ notifications

    async def watch(self, stop: asyncio.Event) -> None:
        """inotify between ticks (eventsvc.scanner.watch); its state goes to the status KV."""
        self.watcher = Watcher(
            self.libraries,
            self.excludes,
            self._on_watched,
            self._on_watch_status,
            debounce=self.settings.watch_debounce,
            retry=self.settings.watch_retry,
            retry_max=self.settings.watch_retry_max,
        )
        if not self.settings.watch:
            await self.watcher.off("file watching is turned off (EVENTSVC_WATCH / --no-watch)")
            return
        await self.watcher.run(stop)

    async def _on_watched(self, lib: Library, rels: set[bytes]) -> None:
        async with self._locks[lib.id]:
            await self._adopt(lib)
            st = self.state.libraries.get(lib.id)
            if st is None or st.state != "online":
                return  # a stale library waits for its tick
            if WHOLE_LIBRARY in rels:  # notifications were lost (overflow, restart)
                await self._scan_library(lib, full=False, accept_missing=False)
            else:
                await self._check_paths(lib, rels, getattr(rels, "moved", None))

    async def _on_watch_status(self, lib: Library, status: WatchStatus) -> None:
        await self.event_log.put_status(f"watch.{lib.id}", asdict(status))

    async def _check_paths(
        self, lib: Library, rels: Collection[bytes], moved: set[bytes] | None = None
    ) -> None:
        """Publish what changed at ``rels``; files gone from there are judged in the
        library's deletion window, except those ``moved`` elsewhere under the root."""
        known = self.state.lib_files(lib.id)
        root = os.fsencode(lib.root)
        excludes = self.excludes[lib.id]

        def look() -> tuple[list[WalkEntry], list[bytes]]:
            found: list[WalkEntry] = []
            gone: list[bytes] = []
            for rel in rels:
                srel = rel.decode("utf-8", "surrogateescape")
                if any(excludes.name(p) for p in srel.split("/")) or excludes.path(srel):
                    continue
                absp = os.path.join(root, rel)
                if os.path.isdir(absp):
                    found.extend(walk(root, excludes, lambda m: None, start=rel))
                elif os.path.lexists(absp):
                    _one(root, rel, found, excludes)
                else:
                    prefix = rel + b"/"
                    gone.extend(k for k in known if k == rel or k.startswith(prefix))
            return found, gone

        found, gone = await asyncio.to_thread(look)
        settling = self.settling[lib.id]
        if settling.seconds > 0:
            here = {e.rel for e in found}
            for rel in rels:
                if rel not in here:
                    settling.forget(rel)  # gone (or excluded) while it was being written
            found = settling.split(found)
        items, meta = [], []
        for e in found:
            k = known.get(e.rel)
            if k is not None and k[1] == e.size and k[2] == e.mtime_ns:
                continue
            fid = k[0] if k else make_file_id(lib.id, e.rel)
            kseq = k[3] if k else self.state.gone.get(fid, 0)
            items.append(self._seen_event(lib, e, kseq, fid))
            meta.append((e, fid))
        seqs = await self._publish(items)
        for (e, fid), seq in zip(meta, seqs, strict=True):
            known[e.rel] = (fid, e.size, e.mtime_ns, seq)
        known.maybe_pack()  # no thread reads it now (the library's lock is held)
        self._schedule_settle(lib)
        renamed: list[bytes] = []
        if moved:
            w = self.windows.get(lib.id)
            if w is not None:  # the way out came in an earlier batch than the way in
                back = {r for r in w.rels if _under(r, moved)}
                w.rels -= back
                renamed.extend(back)
            renamed.extend(r for r in gone if _under(r, moved))
            gone = [r for r in gone if not _under(r, moved)]
        if renamed and await asyncio.to_thread(probe, lib.root, len(known)) is None:
            # Renamed within the root: the new place is seen; the old one is missing.
            self.pending_missing.setdefault(lib.id, deque()).extend(renamed)
            await self._drain_missing(lib)
        if gone:
            await self._window_add(lib, gone, len(known))

    # ------------------------------------------------------------ health from the log

    async def _adopt(self, lib: Library) -> None:
        """Take the library's health from the log when another process published a newer
        verdict (caller holds the library's lock); its files are then reloaded from the
        log as well, so that what that process recorded (FileMissing of --accept-missing)
        is known here."""
        if self.follower is None:
            return
        theirs = self.follower.states.get(lib.id)
        mine = self.state.libraries.get(lib.id)
        if theirs is None or (mine is not None and theirs.seq <= mine.seq):
            return
        log.info(
            "library %s (%s) is %s by another process (event %d); following the log",
            lib.name, lib.id, theirs.state, theirs.seq,
        )  # fmt: skip
        fresh = await ScanState.load(self.event_log)
        self.state.files[lib.id] = fresh.lib_files(lib.id)
        self.state.gone.update(fresh.gone)
        self.state.libraries[lib.id] = fresh.libraries.get(lib.id) or Health(**vars(theirs))
        self.pending_missing.pop(lib.id, None)
        self._close_window(lib.id)

    # ------------------------------------------------------------ files being written

    def _schedule_settle(self, lib: Library) -> None:
        """While running, look again at the files still settling when they may have."""
        if not self._background or not len(self.settling[lib.id]):
            return
        key = (lib.id, "settle")
        t = self._timers.get(key)
        if t is None or t.done():
            self._timers[key] = asyncio.create_task(self._settle_later(lib))

    async def _settle_later(self, lib: Library) -> None:
        settling = self.settling[lib.id]
        while (wait := settling.due_in()) is not None:
            await asyncio.sleep(max(wait, 0.05))
            try:
                async with self._locks[lib.id]:
                    await self._adopt(lib)
                    st = self.state.libraries.get(lib.id)
                    if st is None or st.state != "online":
                        return  # a stale library waits for its (full) tick
                    due = settling.due()
                    if due:
                        await self._check_paths(lib, sorted(due))
            except Exception:
                log.exception("re-checking files being written in %s failed", lib.id)
                return  # the next tick catches up

    async def _settle_now(self, reports: list[ScanReport]) -> None:
        """A one-shot scan: wait for files being written to settle (at most a few settle
        times; what still changes is counted in the report's ``unsettled``)."""
        limit = time.monotonic() + 3 * self.settings.settle_seconds + 1.0
        by_id = {r.library_id: r for r in reports}
        for lib in self.libraries:
            settling = self.settling[lib.id]
            report = by_id.get(lib.id)
            if report is None or report.state != "online":
                continue
            while (wait := settling.due_in()) is not None and time.monotonic() + wait < limit:
                await asyncio.sleep(max(wait, 0.05))
                async with self._locks[lib.id]:
                    known = self.state.lib_files(lib.id)
                    before = len(known)
                    await self._check_paths(lib, sorted(settling.due()))  # walk-like order
                    report.new += len(known) - before
            report.unsettled = len(settling)

    # ------------------------------------------------------------ watched deletions

    async def _window_add(self, lib: Library, gone: list[bytes], known: int) -> None:
        """Gather deletions seen by the watcher; judge them once none came for a while, or
        at once when they already are too many (caller holds the library's lock)."""
        w = self.windows.get(lib.id)
        if w is None:
            w = self.windows[lib.id] = DeletionWindow(base=known)
        w.add(gone)
        cfg = self.settings
        if w.too_many(cfg.missing_share, cfg.missing_min_files):
            why = (
                f"{len(w.rels)} of {w.base} known files were deleted or moved away within "
                f"{cfg.watch_delete_window:g} s of each other (> {cfg.missing_share:.0%}); "
                "treated as an unavailable library, not as deletions "
                "(scan with --accept-missing to confirm)"
            )
            self._close_window(lib.id)
            self.pending_missing.pop(lib.id, None)
            await self._set_health(lib, why)
            return
        key = (lib.id, "window")
        t = self._timers.get(key)
        if t is None or t.done():
            self._timers[key] = asyncio.create_task(self._window_later(lib))

    def _close_window(self, library_id: str) -> DeletionWindow | None:
        t = self._timers.pop((library_id, "window"), None)
        if t is not None and t is not asyncio.current_task():
            t.cancel()
        return self.windows.pop(library_id, None)

    async def _window_later(self, lib: Library) -> None:
        span = self.settings.watch_delete_window
        while True:
            w = self.windows.get(lib.id)
            wait = span - w.quiet_for() if w is not None else 0.0
            if wait <= 0:
                break
            await asyncio.sleep(max(wait, 0.05))
        try:
            async with self._locks[lib.id]:
                w = self._close_window(lib.id)
                if w is None:
                    return
                st = self.state.libraries.get(lib.id)
                if st is None or st.state != "online":
                    return  # a stale library's deletions are judged by its full scan
                known = self.state.lib_files(lib.id)
                reason = await asyncio.to_thread(probe, lib.root, len(known))
                if reason:
                    await self._set_health(lib, reason)
                    return
                self.pending_missing.setdefault(lib.id, deque()).extend(w.rels)
                await self._drain_missing(lib)
        except Exception:
            log.exception(
                "judging the deletions seen in %s failed; the next scan catches up", lib.id
            )


def _under(rel: bytes, tops: set[bytes]) -> bool:
    """Whether ``rel`` is one of ``tops`` or inside one of them."""
    if rel in tops:
        return True
    return any(rel.startswith(t + b"/") for t in tops)


def _one(root: bytes, rel: bytes, out: list[WalkEntry], excludes: Excludes) -> None:
    """Append the file at ``rel`` if it is a regular media file inside the root (symlinks
    as the walk follows them)."""
    entry = stat_one(root, rel, excludes)
    if entry is not None:
        out.append(entry)
