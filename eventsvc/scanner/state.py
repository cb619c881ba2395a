"""What the scanner knows, rebuilt from the log at start (no side database): a view of the
one library-state fold (:mod:`eventsvc.core.library_state`) keyed the way walks need it,
each library's files packed (:class:`~eventsvc.scanner.known.KnownFiles`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from eventsvc.core.health import Health
from eventsvc.core.library_state import FileState, LibraryState
from eventsvc.core.log import EventLog
from eventsvc.core.memory import release_free_memory
from eventsvc.scanner.known import Columns, Known, KnownFiles

__all__ = ["Known", "KnownFiles", "ScanState"]


def _drained(files: dict[str, FileState]) -> Iterator[tuple[str, FileState]]:
    while files:
        yield files.popitem()


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
    def of(cls, folded: LibraryState, *, consume: bool = False) -> ScanState:
        """The scanner's view of ``folded``; ``consume``: empty ``folded.files`` while
        packing (a start-up load: the fold's per-file objects go as the packed columns
        grow, so the peak is not both at once)."""
        state = cls(libraries=folded.libraries)
        per_lib: dict[str, Columns] = {}
        for file_id, f in _drained(folded.files) if consume else folded.files.items():
            cols = per_lib.get(f.library_id)
            if cols is None:
                cols = per_lib[f.library_id] = Columns.empty()
            cols.append(f.path, file_id, f.size, f.mtime_ns, f.seq)
        for library_id in list(per_lib):
            state.files[library_id] = KnownFiles.from_columns(per_lib.pop(library_id))
        for file_id, (library_id, seq) in folded.gone.items():
            # Keep the missing file's last seq: a later FileSeen's Msg-Id names it.
            state.lib_files(library_id)  # the library exists
            state.gone[file_id] = seq
        return state

    @classmethod
    async def load(cls, event_log: EventLog) -> ScanState:
        """The last FileSeen/FileMissing per file and each library's health."""
        state = cls.of(await LibraryState.load(event_log), consume=True)
        release_free_memory()  # the fold's per-file objects are gone: give their pages back
        return state
