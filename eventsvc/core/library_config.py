"""Library configuration: the one fold of ``LibraryAdded`` / ``LibraryUpdated`` /
``LibraryRemoved`` (issue 16), next to :mod:`eventsvc.core.library_state`.

Every component folds the same events the same way (:class:`LibraryCatalog`): the
scanner (which roots it probes, walks and watches), the derivers' roots, the video
reaper and the API. Only configured roots are ever read, so the fold applies the checks
configuration gets (:func:`check_root`): an added root must be absolute and normalised,
not inside (or around) another library, and not the data dir (nor inside or around it);
an event failing them is ignored and remembered in :attr:`LibraryCatalog.refused`.
Whether the root exists is checked by the API before it publishes; the fold does not,
so an unmounted share at start is a stale library, not a refused one.

:func:`reconcile` turns the TOML file and CLI roots into events at start: nothing when
the log already says the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from eventsvc.core.errors import ConfigError
from eventsvc.core.events import Event, LibraryAdded, LibraryRemoved, LibraryUpdated, decode
from eventsvc.core.follow import follow_folding
from eventsvc.core.log import EventLog, RawEvent
from eventsvc.core.settings import Library

__all__ = [
    "CatalogFollower",
    "LibraryCatalog",
    "LibraryConfig",
    "check_root",
    "config_subjects",
    "load_catalog",
    "reconcile",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    """One configured library as the log says it is."""

    library_id: str
    name: str
    root: str
    excludes: tuple[str, ...] = ()
    enabled: bool = True
    seq: int = 0
    """Stream sequence of the last event that changed it."""

    def library(self) -> Library:
        return Library(
            id=self.library_id, name=self.name, root=Path(self.root),
            enabled=self.enabled, exclude=self.excludes,
        )  # fmt: skip


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or below it."""
    return a == b or b in a.parents


def check_root(
    root: str | Path, library_id: str, others: Iterable[tuple[str, str | Path]],
    data_dir: Path | None,
) -> str | None:  # fmt: skip
    """Why ``root`` cannot be the root of ``library_id`` (None: it can): not absolute or
    not normalised, the data dir or inside/around it, inside/around another library's
    root (``others``: (id, root) of the libraries configured now)."""
    text = str(root)
    if not text or not os.path.isabs(text):
        return f"root {text!r} is not an absolute path"
    if os.path.normpath(text) != text.rstrip("/") and text != "/":
        return f"root {text!r} is not normalised (no '.', '..' or '//')"
    p = Path(text)
    if data_dir is not None:
        d = Path(os.path.abspath(data_dir))
        if _inside(p, d) or _inside(d, p):
            return f"root {text} is (inside or around) the data dir {d}"
    for other_id, other_root in others:
        if other_id == library_id:
            continue
        o = Path(str(other_root))
        if _inside(p, o) or _inside(o, p):
            return f"root {text} is inside or around library {other_id} ({o})"
    return None


def config_subjects(prefix: str) -> list[str]:
    return [f"{prefix}.library.*.{t}" for t in ("LibraryAdded", "LibraryUpdated", "LibraryRemoved")]


@dataclass
class LibraryCatalog:
    """The fold: library id -> its configuration (removed ones are gone from it)."""

    data_dir: Path | None = None
    libraries: dict[str, LibraryConfig] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    """Library id -> seq of its LibraryRemoved (while it is not added again)."""
    last_removed: dict[str, int] = field(default_factory=dict)
    """Library id -> seq of its last LibraryRemoved, kept when it is added again."""
    refused: dict[str, str] = field(default_factory=dict)
    """Library id -> why its last LibraryAdded was ignored."""
    seq: int = 0

    def fold(self, seq: int, event: Event) -> bool:
        """Apply one event at stream sequence ``seq``; True when the catalog changed."""
        if seq <= self.seq and seq:
            return False
        self.seq = max(self.seq, seq)
        if isinstance(event, LibraryAdded):
            others = [(c.library_id, c.root) for c in self.libraries.values()]
            why = check_root(event.root, event.library_id, others, self.data_dir)
            if why is not None:
                if self.refused.get(event.library_id) != why:
                    log.warning("LibraryAdded %s ignored: %s", event.library_id, why)
                self.refused[event.library_id] = why
                return False
            self.refused.pop(event.library_id, None)
            self.removed.pop(event.library_id, None)
            self.libraries[event.library_id] = LibraryConfig(
                event.library_id, event.name, event.root, tuple(event.excludes),
                event.enabled, seq,
            )  # fmt: skip
            return True
        if isinstance(event, LibraryUpdated):
            cur = self.libraries.get(event.library_id)
            if cur is None:
                return False
            new = replace(
                cur,
                name=cur.name if event.name is None else event.name,
                excludes=cur.excludes if event.excludes is None else tuple(event.excludes),
                enabled=cur.enabled if event.enabled is None else event.enabled,
                seq=seq,
            )
            self.libraries[event.library_id] = new
            return True
        if isinstance(event, LibraryRemoved):
            if self.libraries.pop(event.library_id, None) is None:
                return False
            self.removed[event.library_id] = seq
            self.last_removed[event.library_id] = seq
            return True
        return False

    def fold_raw(self, raw: RawEvent) -> bool:
        try:
            ev = decode(raw.data, raw.headers)
        except Exception as exc:  # one bad message must not blind every reader
            log.warning("library configuration: event %d does not decode: %s", raw.seq, exc)
            return False
        return self.fold(raw.seq, ev)

    def enabled(self) -> list[Library]:
        return [c.library() for c in self.libraries.values() if c.enabled]

    def all(self) -> list[Library]:
        return [c.library() for c in self.libraries.values()]

    def check(self, root: str | Path, library_id: str) -> str | None:
        """:func:`check_root` against this catalog's libraries and data dir."""
        others = [(c.library_id, c.root) for c in self.libraries.values()]
        return check_root(root, library_id, others, self.data_dir)

    def copy(self) -> LibraryCatalog:
        return LibraryCatalog(
            self.data_dir, dict(self.libraries), dict(self.removed), dict(self.last_removed),
            dict(self.refused), self.seq,
        )  # fmt: skip


async def load_catalog(event_log: EventLog, data_dir: Path | None) -> LibraryCatalog:
    """The catalog folded from every configuration event up to the log's end."""
    catalog = LibraryCatalog(data_dir)
    async for batch in event_log.read(config_subjects(event_log.prefix)):
        for raw in batch:
            catalog.fold_raw(raw)
    return catalog


def reconcile(configured: Iterable[Library], catalog: LibraryCatalog) -> list[Event]:
    """The events that make the log say what the TOML file / CLI roots say: a
    LibraryAdded for a library the log does not have (or removed), a LibraryUpdated
    with the fields that differ; nothing when it says the same. Libraries only the log
    has (added through the API) are left alone. Raises ConfigError for a root the fold
    would refuse."""
    events: list[Event] = []
    known = catalog.copy()
    for lib in configured:
        cur = known.libraries.get(lib.id)
        excludes = tuple(lib.exclude)
        ev: Event
        if cur is None or cur.root != str(lib.root):
            why = known.check(str(lib.root), lib.id)
            if why is not None:
                raise ConfigError(f"library {lib.id}: {why}")
            ev = LibraryAdded(
                library_id=lib.id, name=lib.name, root=str(lib.root), excludes=excludes,
                enabled=lib.enabled,
            )  # fmt: skip
        else:
            changes: dict[str, object] = {}
            if cur.name != lib.name:
                changes["name"] = lib.name
            if cur.excludes != excludes:
                changes["excludes"] = excludes
            if cur.enabled != lib.enabled:
                changes["enabled"] = lib.enabled
            if not changes:
                continue
            ev = LibraryUpdated(library_id=lib.id, **changes)  # type: ignore[arg-type]
        known.fold(known.seq + 1, ev)
        events.append(ev)
    return events


class CatalogFollower:
    """Keeps :attr:`catalog` folded from the log as configuration events arrive."""

    def __init__(self, event_log: EventLog, catalog: LibraryCatalog) -> None:
        self.event_log = event_log
        self.catalog = catalog
        self.changed = asyncio.Event()
        """Set whenever :attr:`catalog` changed (the reader clears it)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the configuration subjects after the catalog's sequence until ``stop``."""
        await follow_folding(
            self.event_log,
            config_subjects(self.event_log.prefix),
            lambda raw: self.catalog.fold_raw(raw),
            self.changed,
            stop,
            what="library configuration",
            log=log,
            start_seq=lambda: self.catalog.seq + 1,
        )
