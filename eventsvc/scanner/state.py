"""What the scanner knows, rebuilt from the log at start (no side database): a view of the
one library-state fold (:mod:`eventsvc.core.library_state`) keyed the way walks need it,
each library's files packed (:class:`~eventsvc.scanner.known.KnownFiles`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventsvc.core.health import Health
from eventsvc.core.library_state import LibraryState
from eventsvc.core.log import EventLog
from eventsvc.scanner.known import Known, KnownFiles

__all__ = ["Known", "KnownFiles", "ScanState"]


@dataclass
class ScanState:
    files: dict[str, KnownFiles] = field(default_factory=dict)
    """library id -> raw relative path -> what was last seen there."""
    libraries: dict[str, Health] = field(default_factory=dict)
    gone: dict[str, int] = field(default_factory=dict)
    """file_id -> seq of its FileMissing, for files that may come back."""

    def lib_files(self, library_id: str) -> KnownFiles:
        known = self.files.get(library_id)
        if known is None:
            known = self.files[library_id] = KnownFiles()
        return known

    @classmethod
    def of(cls, folded: LibraryState) -> ScanState:
        state = cls(libraries=folded.libraries)
        per_lib: dict[str, list[tuple[bytes, Known]]] = {}
        for file_id, f in folded.files.items():
            per_lib.setdefault(f.library_id, []).append(
                (f.path, (file_id, f.size, f.mtime_ns, f.seq))
            )
        for library_id, items in per_lib.items():
            state.files[library_id] = KnownFiles(items)
        for file_id, (library_id, seq) in folded.gone.items():
            # Keep the missing file's last seq: a later FileSeen's Msg-Id names it.
            state.lib_files(library_id)  # the library exists
            state.gone[file_id] = seq
        return state

    @classmethod
    async def load(cls, event_log: EventLog) -> ScanState:
        """The last FileSeen/FileMissing per file and each library's health."""
        return cls.of(await LibraryState.load(event_log))
