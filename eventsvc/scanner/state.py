"""What the scanner knows, rebuilt from the log at start (no side database)."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventsvc.events import FileMissing, FileSeen, LibraryOnline, LibraryStale, decode
from eventsvc.log import EventLog

__all__ = ["Known", "LibraryState", "ScanState"]

# (file_id, size, mtime_ns, seq of the last event about this file)
Known = tuple[str, int, int, int]


@dataclass
class LibraryState:
    state: str = "unknown"  # 'online' | 'stale' | 'unknown'
    seq: int = 0
    reason: str | None = None


@dataclass
class ScanState:
    files: dict[str, dict[bytes, Known]] = field(default_factory=dict)
    libraries: dict[str, LibraryState] = field(default_factory=dict)
    gone: dict[str, int] = field(default_factory=dict)
    """file_id -> seq of its FileMissing, for files that may come back."""

    def lib_files(self, library_id: str) -> dict[bytes, Known]:
        return self.files.setdefault(library_id, {})

    @classmethod
    async def load(cls, event_log: EventLog) -> ScanState:
        """The last FileSeen/FileMissing per file and the last library event per library."""
        p = event_log.prefix
        latest: dict[str, tuple[int, FileSeen | FileMissing]] = {}
        async for batch in event_log.read(
            [f"{p}.file.*.FileSeen", f"{p}.file.*.FileMissing"], last_per_subject=True
        ):
            for raw in batch:
                ev = decode(raw.data, raw.headers)
                if not isinstance(ev, (FileSeen, FileMissing)):
                    continue
                prev = latest.get(ev.file_id)
                if prev is None or prev[0] < raw.seq:
                    latest[ev.file_id] = (raw.seq, ev)
        state = cls()
        for seq, ev in latest.values():
            if isinstance(ev, FileSeen):
                state.lib_files(ev.library_id)[ev.path_bytes()] = (
                    ev.file_id,
                    ev.size,
                    ev.mtime_ns,
                    seq,
                )
            else:
                # Keep the missing file's last seq: a later FileSeen's Msg-Id names it.
                state.lib_files(ev.library_id)  # the library exists
                state.gone[ev.file_id] = seq
        async for batch in event_log.read(
            [f"{p}.library.*.LibraryStale", f"{p}.library.*.LibraryOnline"], last_per_subject=True
        ):
            for raw in batch:
                ev = decode(raw.data, raw.headers)
                if isinstance(ev, (LibraryStale, LibraryOnline)):
                    cur = state.libraries.get(ev.library_id)
                    if cur is None or cur.seq < raw.seq:
                        state.libraries[ev.library_id] = LibraryState(
                            "stale" if isinstance(ev, LibraryStale) else "online",
                            raw.seq,
                            getattr(ev, "reason", None),
                        )
        return state
