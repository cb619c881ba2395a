"""What the scanner knows, rebuilt from the log at start (no side database)."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventsvc.core.events import FileMissing, FileSeen, decode
from eventsvc.core.health import Health, load_health
from eventsvc.core.log import EventLog

__all__ = ["Known", "LibraryState", "ScanState"]

# (file_id, size, mtime_ns, seq of the last event about this file)
Known = tuple[str, int, int, int]


LibraryState = Health
"""A library's health as the scanner knows it (see :mod:`eventsvc.core.health`)."""


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
        """The last FileSeen/FileMissing per file and each library's health (the fold of
        :mod:`eventsvc.core.health`)."""
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
        state.libraries = await load_health(event_log)
        return state
