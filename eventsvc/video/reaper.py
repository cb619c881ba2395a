"""The guarded clean-up of orphan playlist directories (the reference's rules).

A tick acts only when every library (enabled in configuration, or known from the log and
not disabled) is Online, with the same LibraryOnline event as on the previous tick (so
online on two consecutive ticks, with no stale spell between them), and only once its own
fold of the log (:class:`~eventsvc.core.library_state.LibraryState`, caught up to the log's
last sequence at the tick's start) says so: the reaper never reads the read model. It then
removes, under the video root, only directories of the exact shapes we write:
``<2-hex>/<64-hex>`` whose hash no current location holds (per that fold), and
``<2-hex>/.tmp-<64-hex>-<12-hex>`` work directories older than ``tmp_max_age``. Symlinks
are never followed; anything else is never touched; at most ``max_remove`` directories go per tick.

Each playlist removal is announced first, as a ``PlaylistRemoved`` event: the read model
stops calling the playlist ready, and a content that comes back gets its playlist made
again. A removal whose announcement cannot be published waits for the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eventsvc.core.errors import PublishError
from eventsvc.core.events import PlaylistRemoved
from eventsvc.core.health import load_health
from eventsvc.core.layout import is_hash_dir, is_shard, is_tmp_dir
from eventsvc.core.library_state import LibraryState
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library

__all__ = ["Reaper", "SweepReport", "library_states", "sweep"]

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    inspected: int = 0
    removed: int = 0
    errors: int = 0
    deferred: int = 0
    """Orphans left for the next tick (the per-tick cap)."""
    tmp_removed: int = 0


def sweep(
    root: Path, live: set[str], *, max_remove: int, tmp_max_age: float, now: float | None = None,
    announce: Callable[[str], bool] | None = None,
) -> SweepReport:  # fmt: skip
    """Remove what the rules allow; ``announce(hash)`` is asked before each playlist
    directory goes (False: keep it for now)."""
    report = SweepReport()
    now = time.time() if now is None else now
    try:
        shards = list(os.scandir(root))
    except FileNotFoundError:
        return report
    for shard in shards:
        if not is_shard(shard.name) or not shard.is_dir(follow_symlinks=False):
            continue
        try:
            entries = list(os.scandir(shard.path))
        except OSError as exc:
            log.warning("clean-up: cannot read %s: %s", shard.path, exc)
            report.errors += 1
            continue
        touched = False
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                continue
            if is_hash_dir(shard.name, e.name):
                report.inspected += 1
                if e.name in live:
                    continue
                if report.removed + report.tmp_removed >= max_remove:
                    report.deferred += 1
                    continue
                if announce is not None and not announce(e.name):
                    report.errors += 1
                    continue
                if _remove(e.path, report):
                    report.removed += 1
                    touched = True
            elif is_tmp_dir(shard.name, e.name):
                try:
                    age = now - e.stat(follow_symlinks=False).st_mtime
                except OSError:
                    continue
                if age < tmp_max_age or report.removed + report.tmp_removed >= max_remove:
                    continue
                if _remove(e.path, report):
                    report.tmp_removed += 1
                    touched = True
        if touched:
            with contextlib.suppress(OSError):
                os.rmdir(shard.path)  # only if now empty
    return report


def _remove(path: str, report: SweepReport) -> bool:
    log.info("clean-up: removing %s", path)
    try:
        shutil.rmtree(path)  # removes links inside, never follows them
    except OSError as exc:
        log.warning("clean-up: cannot remove %s: %s", path, exc)
        report.errors += 1
        return False
    return True


async def library_states(event_log: EventLog) -> dict[str, tuple[str, int]]:
    """Library id -> ('online' | 'stale', seq of that event): the health fold every
    component shares (:mod:`eventsvc.core.health`)."""
    return {k: (h.state, h.seq) for k, h in (await load_health(event_log)).items()}


class Reaper:
    def __init__(
        self,
        video_root: Path,
        event_log: EventLog,
        libraries: tuple[Library, ...] | list[Library],
        *,
        max_remove: int = 500,
        tmp_max_age: float = 3600.0,
        stats: dict[str, Any] | None = None,
    ) -> None:
        self.video_root = Path(video_root)
        self.event_log = event_log
        self.state = LibraryState(paths=False)
        """The reaper's own fold of the log, caught up at each tick (no paths: it only
        asks which content some location holds)."""
        self.enabled = {lib.id for lib in libraries if lib.enabled}
        self.disabled = {lib.id for lib in libraries if not lib.enabled}
        self.max_remove = max_remove
        self.tmp_max_age = tmp_max_age
        self._previous: dict[str, int] | None = None
        self.stats = stats if stats is not None else {}
        self.stats.update(
            ticks=0, runs=0, last_skip=None, inspected=0, removed=0, errors=0, tmp_removed=0,
            last_run=None,
        )  # fmt: skip

    async def tick(self) -> SweepReport | None:
        """One clean-up tick: a report when it swept, None when it held back (why: stats)."""
        self.stats["ticks"] += 1
        target = await self.event_log.last_seq()
        if await self.state.catch_up(self.event_log, target) < target:
            self._previous = None
            return self._skip(f"the log could not be read up to seq {target}")
        states = {k: (h.state, h.seq) for k, h in self.state.libraries.items()}
        # a library disabled or removed by configuration events is not expected online
        # (a removed one's files no longer hold content live: issue 16)
        ids = (self.enabled | (set(states) - self.disabled)) - self.state.not_scanned()
        ids |= {i for i, c in self.state.config.libraries.items() if c.enabled}
        not_online = sorted(i for i in ids if states.get(i, ("unknown", 0))[0] != "online")
        if not ids or not_online:
            self._previous = None
            why = f"libraries not online: {', '.join(not_online)}" if ids else "no libraries"
            return self._skip(why)
        snapshot = {i: states[i][1] for i in ids}
        previous, self._previous = self._previous, snapshot
        if previous != snapshot:
            return self._skip("libraries online on this tick; acting on the next healthy one")
        live = self.state.live_hashes()
        loop = asyncio.get_running_loop()

        def announce(content_hash: str) -> bool:  # from the sweep's thread
            done = asyncio.run_coroutine_threadsafe(self._announce(content_hash), loop)
            return done.result()

        report = await asyncio.to_thread(
            sweep, self.video_root, live, max_remove=self.max_remove,
            tmp_max_age=self.tmp_max_age, announce=announce,
        )  # fmt: skip
        self.stats["runs"] += 1
        self.stats["last_skip"] = None
        for k in ("inspected", "removed", "errors", "tmp_removed"):
            self.stats[k] += getattr(report, k)
        self.stats["last_run"] = asdict(report)
        log.info(
            "playlist clean-up: inspected %d, removed %d (+%d temp), %d errors, %d deferred",
            report.inspected, report.removed, report.tmp_removed, report.errors, report.deferred,
        )  # fmt: skip
        return report

    async def _announce(self, content_hash: str) -> bool:
        event = PlaylistRemoved(
            content_hash=content_hash,
            reason="no live location held this content on two consecutive healthy ticks",
        )
        try:
            await asyncio.wait_for(self.event_log.publish(event), 30)
        except (PublishError, TimeoutError) as exc:
            log.warning("clean-up: keeping %s for now: %s", content_hash[:12], exc)
            return False
        return True

    def _skip(self, why: str) -> None:
        self.stats["last_skip"] = why
        log.info("playlist clean-up held back: %s", why)
        return None

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            try:
                await self.tick()
            except Exception as exc:  # the clean-up must never take the worker down
                self.stats["errors"] = self.stats.get("errors", 0) + 1
                self.stats["last_skip"] = f"tick failed: {exc!r}"
                log.warning("playlist clean-up tick failed: %r", exc)
