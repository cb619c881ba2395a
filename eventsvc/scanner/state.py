"""What the scanner knows, rebuilt from the log at start (no side database): a view of the
one library-state fold (:mod:`eventsvc.core.library_state`) keyed the way walks need it."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventsvc.core.health import Health
from eventsvc.core.library_state import LibraryState
from eventsvc.core.log import EventLog

__all__ = ["Known", "ScanState"]

# (file_id, size, mtime_ns, seq of the last event about this file)
Known = tuple[str, int, int, int]


@dataclass
class ScanState:
    files: dict[str, dict[bytes, Known]] = field(default_factory=dict)
    """library id -> raw relative path -> what was last seen there."""
    libraries: dict[str, Health] = field(default_factory=dict)
    gone: dict[str, int] = field(default_factory=dict)
    """file_id -> seq of its FileMissing, for files that may come back."""

    def lib_files(self, library_id: str) -> dict[bytes, Known]:
        return self.files.setdefault(library_id, {})

    @classmethod
    def of(cls, folded: LibraryState) -> ScanState:
        state = cls(libraries=folded.libraries)
        for file_id, f in folded.files.items():
            state.lib_files(f.library_id)[f.path] = (file_id, f.size, f.mtime_ns, f.seq)
        for file_id, (library_id, seq) in folded.gone.items():
            # Keep the missing file's last seq: a later FileSeen's Msg-Id names it.
            state.lib_files(library_id)  # the library exists
            state.gone[file_id] = seq
        return state

    @classmethod
    async def load(cls, event_log: EventLog) -> ScanState:
        """The last FileSeen/FileMissing per file and each library's health."""
        return cls.of(await LibraryState.load(event_log))
