"""Ticks: probe every library, walk it, publish FileSeen / FileMissing / library health."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from eventsvc.core.events import Event, FileMissing, FileSeen, LibraryOnline, LibraryStale
from eventsvc.core.health import Health, HealthFollower
from eventsvc.core.ids import file_id as make_file_id
from eventsvc.core.library_config import CatalogFollower
from eventsvc.core.log import EventLog
from eventsvc.core.metrics import ProcessMetrics
from eventsvc.core.settings import Library, Settings
from eventsvc.scanner.notified import Watching
from eventsvc.scanner.probe import probe
from eventsvc.scanner.settle import DeletionWindow, Settling
from eventsvc.scanner.state import ScanState
from eventsvc.scanner.walk import Excludes, WalkEntry, excluded, walk
from eventsvc.scanner.watch import Watcher

__all__ = ["ScanReport", "Scanner"]

log = logging.getLogger(__name__)

CHUNK = 1000


class _Abandoned(Exception):
    """The publishing side gave up: the walking thread stops."""


@dataclass
class ScanReport:
    library_id: str
    full: bool
    started_at: str = ""
    finished_at: str = ""
    duration_s: float = 0.0
    files: int = 0
    new: int = 0
    changed: int = 0
    missing: int = 0
    missing_deferred: int = 0
    unsettled: int = 0
    """Files still changing (being written): published once they have settled."""
    state: str = "online"
    error: str | None = None
    issues: list[str] = field(default_factory=list)
    issue_count: int = 0


Progress = Callable[[str, int], None]


class Scanner(Watching):
    metrics: ProcessMetrics | None = None
    """Where each scan's duration is observed (set by ``ProcessMetrics.add_scanner``)."""

    def __init__(
        self,
        event_log: EventLog,
        libraries: list[Library],
        settings: Settings,
        *,
        extra_excludes: list[str] | None = None,
        progress: Progress | None = None,
        catalog: CatalogFollower | None = None,
    ) -> None:
        self.event_log = event_log
        self.libraries = [lib for lib in libraries if lib.enabled]
        self.settings = settings
        self.progress = progress
        self.catalog = catalog
        """With a catalog (``up``): the libraries are those the log configures, followed
        while running (issue 16: added, disabled, removed, excludes changed)."""
        self._glob = list(settings.exclude) + list(extra_excludes or [])
        self.excludes = {lib.id: self._excludes_of(lib) for lib in self.libraries}
        self.state = ScanState()
        self.pending_missing: dict[str, deque[bytes]] = {}
        self.published = 0
        self.reports: dict[str, ScanReport] = {}
        self.watcher: Watcher | None = None
        self.online_streak = 0
        """Consecutive ticks on which every enabled library was online (guards clean-up)."""
        self.follower: HealthFollower | None = None
        """Follows library health in the log while running: another process's verdict
        (a CLI scan, --accept-missing) is adopted at the next decision."""
        self.settling = {lib.id: Settling(settings.settle_seconds) for lib in self.libraries}
        self.windows: dict[str, DeletionWindow] = {}
        self._locks = {lib.id: asyncio.Lock() for lib in self.libraries}
        self._timers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._background = False
        self._forgotten: dict[str, int] = {}
        """Library id -> the removal whose files were last forgotten."""

    def _excludes_of(self, lib: Library) -> Excludes:
        return Excludes(
            self._glob + list(lib.exclude), follow_symlinks=self.settings.follow_symlinks
        )

    async def load(self) -> None:
        self.state = await ScanState.load(self.event_log)  # removals folded already
        if self.catalog is not None:
            self._forgotten = dict(self.catalog.catalog.last_removed)

    def _forget_removed(self, removed: dict[str, int]) -> None:
        """A library removed since the last look: its files are no longer known, so if it
        is added again they are published again (under new message ids: the removal's
        sequence)."""
        for lib_id, seq in removed.items():
            if seq <= self._forgotten.get(lib_id, 0):
                continue
            self._forgotten[lib_id] = seq
            known = self.state.lib_files(lib_id)
            for fid, *_ in known.values():
                self.state.gone[fid] = max(self.state.gone.get(fid, 0), seq)
            known.clear()
            self.pending_missing.pop(lib_id, None)

    async def reconfigure(self, libraries: list[Library]) -> list[Library]:
        """Scan exactly the enabled ``libraries`` from now on; returns those to scan at
        once (new, enabled again, or with changed excludes or root: their next walk is a
        full one, so newly excluded files go through the guarded missing path)."""
        want = [lib for lib in libraries if lib.enabled]
        before = {lib.id: lib for lib in self.libraries}
        rescan: list[Library] = []
        restart: set[str] = set()
        for lib in want:
            old = before.get(lib.id)
            if old is None or old.exclude != lib.exclude or old.root != lib.root:
                self.excludes[lib.id] = self._excludes_of(lib)
                self.settling.setdefault(lib.id, Settling(self.settings.settle_seconds))
                self._locks.setdefault(lib.id, asyncio.Lock())
                rescan.append(lib)
                if old is not None:
                    restart.add(lib.id)
                    log.info("library %s: configuration changed; scanning it again", lib.id)
                else:
                    log.info("library %s (%s) is configured: scanning it", lib.id, lib.root)
        gone = [i for i in before if i not in {lib.id for lib in want}]
        for lib_id in gone:
            log.info("library %s is disabled or removed: no longer probed or scanned", lib_id)
            self.pending_missing.pop(lib_id, None)
            self._close_window(lib_id)
            for key in [k for k in self._timers if k[0] == lib_id]:
                self._timers.pop(key).cancel()
        self.libraries = want
        if self.catalog is not None:
            self._forget_removed(self.catalog.catalog.last_removed)
        if self.watcher is not None and self.settings.watch:
            await self.watcher.sync(want, restart)
        return rescan

    # ------------------------------------------------------------ publishing

    async def _publish(self, items: list[tuple[Event, str]]) -> list[int]:
        if not items:
            return []
        acks = await self.event_log.publish_many(items)
        self.published += sum(1 for a in acks if not a.duplicate)
        return [a.seq for a in acks]

    async def _set_health(self, lib: Library, reason: str | None) -> None:
        cur = self.state.libraries.get(lib.id)
        want = "stale" if reason else "online"
        if cur is not None and cur.state == want:
            return  # transitions only (stale for another reason is still stale)
        ev: Event
        if reason:
            log.warning("library %s (%s) is stale: %s", lib.name, lib.id, reason)
            ev = LibraryStale(library_id=lib.id, name=lib.name, root=str(lib.root), reason=reason)
        else:
            log.info("library %s (%s) is online", lib.name, lib.id)
            ev = LibraryOnline(library_id=lib.id, name=lib.name, root=str(lib.root))
        prev = cur.seq if cur else 0
        [seq] = await self._publish([(ev, f"{ev.type}:{lib.id}:{prev}")])  # type: ignore[attr-defined]
        self.state.libraries[lib.id] = Health(want, seq, reason)

    def _seen_event(
        self, lib: Library, e: WalkEntry, known_seq: int, fid: str
    ) -> tuple[Event, str]:
        try:
            path = e.rel.decode("utf-8")
            raw = None
        except UnicodeDecodeError:
            path = e.rel.decode("utf-8", "replace")
            raw = base64.b64encode(e.rel).decode()
        ev = FileSeen(
            library_id=lib.id,
            file_id=fid,
            path=path,
            raw_path=raw,
            size=e.size,
            mtime_ns=e.mtime_ns,
            media_kind=e.kind,  # type: ignore[arg-type]
        )
        return ev, f"FileSeen:{fid}:{e.size}:{e.mtime_ns}:{known_seq}"

    # ------------------------------------------------------------ one library

    async def scan_library(
        self, lib: Library, *, full: bool, accept_missing: bool = False
    ) -> ScanReport:
        async with self._locks[lib.id]:
            await self._adopt(lib)
            return await self._scan_library(lib, full=full, accept_missing=accept_missing)

    async def _scan_library(self, lib: Library, *, full: bool, accept_missing: bool) -> ScanReport:
        health = self.state.libraries.get(lib.id)
        if health is not None and health.state == "stale":
            full = True  # coming back needs the missing-share check of a full scan
        report = ScanReport(lib.id, full, started_at=datetime.now(UTC).isoformat())
        t0 = time.monotonic()
        known = self.state.lib_files(lib.id)

        def note(msg: str) -> None:
            report.issue_count += 1
            if len(report.issues) < 20:
                report.issues.append(msg)
            if report.issue_count <= 100:
                log.warning("scan %s: %s", lib.id, msg)

        reason = await asyncio.to_thread(probe, lib.root, len(known))
        if reason:
            await self._set_health(lib, reason)
            report.state, report.error = "stale", reason
            return await self._finish(report, t0)

        root = os.fsencode(lib.root)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[tuple[WalkEntry, int, str]] | None] = asyncio.Queue(maxsize=64)
        seen: set[bytes] | None = set() if full else None
        excludes = self.excludes[lib.id]
        gone = self.state.gone
        lib_id = lib.id

        abandoned = threading.Event()

        def put(item: list[tuple[WalkEntry, int, str]] | None) -> None:
            if abandoned.is_set():
                raise _Abandoned
            fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            while True:
                try:
                    fut.result(0.5)
                    return
                except concurrent.futures.TimeoutError:
                    if abandoned.is_set():
                        fut.cancel()
                        raise _Abandoned from None

        def producer() -> int:
            n = 0
            chunk: list[tuple[WalkEntry, int, str]] = []
            try:
                for e in walk(root, excludes, lambda m: loop.call_soon_threadsafe(note, m)):
                    n += 1
                    if seen is not None:
                        seen.add(e.rel)
                    if known.unchanged(e.rel, e.size, e.mtime_ns):
                        continue
                    k = known.get(e.rel)
                    if k is None:
                        fid = make_file_id(lib_id, e.rel)
                        chunk.append((e, gone.get(fid, 0), fid))
                    else:
                        chunk.append((e, k[3], k[0]))
                    if len(chunk) >= CHUNK:
                        put(chunk)
                        chunk = []
                if chunk:
                    put(chunk)
            except _Abandoned:
                return n
            except BaseException:
                with contextlib.suppress(_Abandoned):
                    put(None)  # the publishing side must not wait forever
                raise
            with contextlib.suppress(_Abandoned):
                put(None)
            return n

        walker = asyncio.create_task(asyncio.to_thread(producer))
        settling = self.settling[lib.id]
        try:
            while (chunk := await queue.get()) is not None:
                if settling.seconds > 0:
                    ok = {e.rel for e in settling.split(e for e, _, _ in chunk)}
                    chunk = [c for c in chunk if c[0].rel in ok]
                items = [self._seen_event(lib, e, kseq, fid) for e, kseq, fid in chunk]
                seqs = await self._publish(items)
                for (e, kseq, fid), seq in zip(chunk, seqs, strict=True):
                    if kseq and e.rel in known:
                        report.changed += 1
                    else:
                        report.new += 1
                    known[e.rel] = (fid, e.size, e.mtime_ns, seq)
                if self.progress:
                    self.progress(lib.id, report.new + report.changed)
        finally:
            abandoned.set()  # a failed publish or a cancel stops the walking thread
            report.files = await walker
        report.unsettled = len(settling)
        self._schedule_settle(lib)
        known.maybe_pack()  # the walking thread is done with it

        if seen is not None:
            self._close_window(lib.id)  # the full scan judges every missing file itself
            missing = list(known.keys() - seen)  # a set difference, in C
            share = len(missing) / len(known) if known else 0.0
            if (
                not accept_missing
                and len(known) >= self.settings.missing_min_files
                and share > self.settings.missing_share
            ):
                why = (
                    f"{len(missing)} of {len(known)} known files are gone at once "
                    f"(> {self.settings.missing_share:.0%}); treated as an unavailable library, "
                    "not as deletions (scan with --accept-missing to confirm)"
                )
                await self._set_health(lib, why)
                report.state, report.error = "stale", why
                self.pending_missing.pop(lib.id, None)
                return await self._finish(report, t0)
            self.pending_missing[lib.id] = deque(missing)
        await self._set_health(lib, None)
        report.missing, report.missing_deferred = await self._drain_missing(lib)
        return await self._finish(report, t0)

    async def _drain_missing(self, lib: Library) -> tuple[int, int]:
        """Publish up to ``missing_cap`` FileMissing (re-checked on disk); keep the rest."""
        pending = self.pending_missing.get(lib.id)
        if not pending:
            return 0, 0
        known = self.state.lib_files(lib.id)
        excludes = self.excludes.get(lib.id)
        batch: list[tuple[bytes, tuple[str, int, int, int]]] = []
        while pending and len(batch) < self.settings.missing_cap:
            rel = pending.popleft()
            k = known.get(rel)
            if k is None:
                continue
            if excluded(excludes, rel):
                batch.append((rel, k))  # excluded since it was seen (issue 16)
                continue
            try:
                os.lstat(os.path.join(os.fsencode(lib.root), rel))
                continue  # it is back
            except FileNotFoundError:
                batch.append((rel, k))
            except OSError:
                continue  # cannot tell: not a deletion
        items: list[tuple[Event, str]] = []
        for rel, k in batch:
            ev = FileMissing(library_id=lib.id, file_id=k[0], path=rel.decode("utf-8", "replace"))
            items.append((ev, f"FileMissing:{k[0]}:{k[3]}"))
        seqs = await self._publish(items)
        for (rel, k), seq in zip(batch, seqs, strict=True):
            known.pop(rel, None)
            self.state.gone[k[0]] = seq
        return len(batch), len(pending)

    async def drain_all(self, reports: list[ScanReport]) -> None:
        """Publish every deferred FileMissing now (in ``missing_cap`` batches): what a
        one-shot ``eventsvc scan --accept-missing`` does, having no next tick, so that no
        other scanner judges the deletions it accepted again."""
        for report in reports:
            lib = next(x for x in self.libraries if x.id == report.library_id)
            async with self._locks[lib.id]:
                while report.missing_deferred:
                    more, report.missing_deferred = await self._drain_missing(lib)
                    report.missing += more
                    if not more:
                        break

    async def _finish(self, report: ScanReport, t0: float) -> ScanReport:
        report.duration_s = round(time.monotonic() - t0, 3)
        report.finished_at = datetime.now(UTC).isoformat()
        self.reports[report.library_id] = report
        if self.metrics is not None:
            self.metrics.observe_scan(report)
        await self.event_log.put_status(f"scan.{report.library_id}", asdict(report))
        return report

    # ------------------------------------------------------------ ticks

    async def tick(self, *, full: bool, accept_missing: bool = False) -> list[ScanReport]:
        reports = [
            await self.scan_library(lib, full=full, accept_missing=accept_missing)
            for lib in self.libraries
        ]
        if not self._background:  # a one-shot scan waits (a while) for files being written
            await self._settle_now(reports)
        if all(r.state == "online" for r in reports):
            self.online_streak += 1
        else:
            self.online_streak = 0
        return reports

    async def _wait_tick(self, stop: asyncio.Event) -> None:
        """Until the next quick tick; a configuration change is applied at once (a new
        library, or one with changed excludes, is scanned in full right away)."""
        deadline = time.monotonic() + self.settings.quick_interval
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            waits = [asyncio.ensure_future(stop.wait())]
            if self.catalog is not None:
                waits.append(asyncio.ensure_future(self.catalog.changed.wait()))
            try:
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if self.catalog is None or not self.catalog.changed.is_set() or stop.is_set():
                continue
            self.catalog.changed.clear()
            try:
                for lib in await self.reconfigure(self.catalog.catalog.enabled()):
                    await self.scan_library(lib, full=True)
            except Exception:
                log.exception("applying a library configuration change failed; next tick retries")

    async def run(self, stop: asyncio.Event) -> None:
        """Full scan first, then quick scans every quick_interval and full every full_interval;
        with ``watch``, file-system notifications are handled in between."""
        await self.load()
        self._background = True
        self.follower = HealthFollower(self.event_log)
        self.follower.states = {k: Health(**vars(v)) for k, v in self.state.libraries.items()}
        follower = asyncio.create_task(self.follower.run(stop))
        watcher = asyncio.create_task(self.watch(stop))
        config = asyncio.create_task(self.catalog.run(stop)) if self.catalog else None
        last_full = 0.0
        try:
            while not stop.is_set():
                full = time.monotonic() - last_full >= self.settings.full_interval or not last_full
                try:
                    await self.tick(full=full)
                    if full:
                        last_full = time.monotonic()
                except Exception:
                    log.exception("scan tick failed; next tick retries")
                await self._wait_tick(stop)
        finally:
            if config is not None:
                config.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(config, 5)
            for t in self._timers.values():
                t.cancel()
            if not stop.is_set():
                watcher.cancel()  # cancelled or failed; on stop it winds down by itself
                follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(watcher, 10)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(follower, 5)
            self._background = False
