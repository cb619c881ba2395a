"""Library state: the one fold of the log that says which libraries are healthy and which
files are where, holding which content.

Every write-side component that needs to know "what is in the libraries" folds the same
events the same way, through :class:`LibraryState`:

- ``LibraryOnline`` / ``LibraryStale``: each library's health (the fold of
  :mod:`eventsvc.core.health`: the highest sequence per library wins);
- ``FileSeen`` / ``FileMissing``: each file's current location, size and mtime (the last of
  the two per file wins; a missing file is remembered in :attr:`LibraryState.gone`);
- ``LibraryAdded`` / ``LibraryUpdated`` / ``LibraryRemoved``: the library configuration
  (:mod:`eventsvc.core.library_config`); a removed library's locations are gone;
- ``HashComputed``: the content a location holds, only while it is still the version that
  was hashed (same size and mtime). A later ``FileSeen`` with another size or mtime clears
  it, exactly as the read model's ``files.content_hash`` does.

The scanner loads it once at start (:meth:`LibraryState.load`, the last file event per
subject: no hashes); the video reaper keeps one and catches it up before each decision
(:meth:`LibraryState.catch_up`, every event in stream order, hashes included), so it never
asks the read model. The workers' roots read the health part (:func:`load_health`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from eventsvc.core.events import (
    Event,
    FileMissing,
    FileSeen,
    HashComputed,
    LibraryAdded,
    LibraryRemoved,
    LibraryUpdated,
    decode,
)
from eventsvc.core.health import Health, health_subjects
from eventsvc.core.health import fold as fold_health
from eventsvc.core.library_config import LibraryCatalog, config_subjects
from eventsvc.core.log import EventLog, RawEvent

__all__ = ["FileState", "LibraryState"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FileState:
    """Where a file is (its last FileSeen) and the content it holds, if hashed since."""

    library_id: str
    path: bytes
    """The raw relative path bytes."""
    size: int
    mtime_ns: int
    seq: int
    """Stream sequence of its last FileSeen."""
    content_hash: str | None = None
    hash_seq: int = 0


@dataclass
class LibraryState:
    """The fold: library health, file locations and the content they hold."""

    libraries: dict[str, Health] = field(default_factory=dict)
    files: dict[str, FileState] = field(default_factory=dict)
    """file_id -> its current location (files whose last event is a FileSeen)."""
    gone: dict[str, tuple[str, int]] = field(default_factory=dict)
    """file_id -> (library id, seq of its FileMissing), for files that may come back."""
    seq: int = 0
    """The highest stream sequence folded (what :meth:`catch_up` continues from)."""
    config: LibraryCatalog = field(default_factory=LibraryCatalog)
    """The library configuration fold (LibraryAdded/Updated/Removed)."""
    paths: bool = True
    """Keep each file's path (the scanner's view needs it; a fold that only asks which
    content is live, the video reaper's, passes False and keeps ``b""``: issue 18)."""
    _ids: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    """One string per library id, shared by every file of the library (memory per file)."""

    # ------------------------------------------------------------ the fold

    def apply(self, seq: int, event: Event) -> bool:
        """Fold one event at stream sequence ``seq``; True when the state changed. An event
        older than what is already folded for its library or file is ignored."""
        self.seq = max(self.seq, seq)
        if isinstance(event, FileSeen):
            return self._seen(seq, event)
        if isinstance(event, FileMissing):
            return self._missing(seq, event)
        if isinstance(event, HashComputed):
            return self._hashed(seq, event)
        if isinstance(event, (LibraryAdded, LibraryUpdated, LibraryRemoved)):
            return self._configured(seq, event)
        return fold_health(self.libraries, seq, event)

    def _configured(self, seq: int, e: LibraryAdded | LibraryUpdated | LibraryRemoved) -> bool:
        """Library configuration (issue 16): a removed library's locations are gone
        (its content stays live only where another location holds it)."""
        if not self.config.fold(seq, e):
            return False
        if isinstance(e, LibraryRemoved):
            for file_id in [i for i, f in self.files.items() if f.library_id == e.library_id]:
                del self.files[file_id]
                self.gone[file_id] = (e.library_id, seq)
        return True

    def not_scanned(self) -> set[str]:
        """Libraries the configuration events disable or remove: not expected online."""
        off = {i for i, c in self.config.libraries.items() if not c.enabled}
        return off | set(self.config.removed)

    def _newer(self, file_id: str, seq: int) -> bool:
        cur = self.files.get(file_id)
        if cur is not None and cur.seq >= seq:
            return False
        gone = self.gone.get(file_id)
        return gone is None or gone[1] < seq

    def _seen(self, seq: int, e: FileSeen) -> bool:
        if not self._newer(e.file_id, seq):
            return False
        cur = self.files.get(e.file_id)
        keep = cur is not None and (cur.size, cur.mtime_ns) == (e.size, e.mtime_ns)
        self.gone.pop(e.file_id, None)
        self.files[e.file_id] = FileState(
            self._ids.setdefault(e.library_id, e.library_id),
            e.path_bytes() if self.paths else b"", e.size, e.mtime_ns, seq,
            cur.content_hash if keep and cur else None, cur.hash_seq if keep and cur else 0,
        )  # fmt: skip
        return True

    def _missing(self, seq: int, e: FileMissing) -> bool:
        if not self._newer(e.file_id, seq):
            return False
        self.files.pop(e.file_id, None)
        self.gone[e.file_id] = (self._ids.setdefault(e.library_id, e.library_id), seq)
        return True

    def _hashed(self, seq: int, e: HashComputed) -> bool:
        cur = self.files.get(e.file_id)
        if cur is None or (cur.size, cur.mtime_ns) != (e.size, e.mtime_ns):
            return False  # only the version of the file that was hashed gets the hash
        cur.content_hash, cur.hash_seq = e.content_hash, seq
        return True

    def apply_raw(self, raw: RawEvent) -> bool:
        """:meth:`apply` of a message as read; one that does not decode is logged and
        skipped (one bad message must not blind every reader)."""
        try:
            ev = decode(raw.data, raw.headers)
        except Exception as exc:
            log.warning("library state: event %d does not decode: %s", raw.seq, exc)
            self.seq = max(self.seq, raw.seq)
            return False
        return self.apply(raw.seq, ev)

    # ------------------------------------------------------------ views

    def live_hashes(self) -> set[str]:
        """Content hashes that some current location still holds."""
        return {f.content_hash for f in self.files.values() if f.content_hash is not None}

    # ------------------------------------------------------------ reading the log

    @staticmethod
    def subjects(event_log: EventLog, *, hashes: bool = True) -> list[str]:
        p = event_log.prefix
        subjects = [f"{p}.file.*.FileSeen", f"{p}.file.*.FileMissing"]
        if hashes:
            subjects.append(f"{p}.content.*.HashComputed")
        return subjects + health_subjects(event_log) + config_subjects(p)

    @classmethod
    async def load(cls, event_log: EventLog) -> LibraryState:
        """Health and locations from the last event per subject (fast; no content hashes:
        a content subject is shared by every file holding it, so its last message is not
        enough). Use :meth:`catch_up` on a fresh state for hashes too."""
        state = cls()
        async for batch in event_log.read(
            cls.subjects(event_log, hashes=False), last_per_subject=True
        ):
            for raw in batch:
                state.apply_raw(raw)
        state.seq = 0  # a last-per-subject read is no position to continue from
        return state

    async def catch_up(self, event_log: EventLog, stop_at: int | None = None) -> int:
        """Fold every event after :attr:`seq` in stream order, up to ``stop_at`` (default:
        the log's last sequence now); returns the sequence folded up to."""
        target = await event_log.last_seq() if stop_at is None else stop_at
        if target > self.seq:
            reconnects = event_log.reconnects
            async for batch in event_log.read(
                self.subjects(event_log), start_seq=self.seq + 1, stop_at=target
            ):
                for raw in batch:
                    self.apply_raw(raw)
            if event_log.reconnects == reconnects:  # else the read may have ended early
                self.seq = max(self.seq, target)
        return self.seq
