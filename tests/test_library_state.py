"""The one library-state fold (issue 15, item 4): its rules event by event, and on a real
pipeline the same live content as the read model's ``files`` table and the same view as
the scanner's start-up load."""

from __future__ import annotations

import os
from pathlib import Path

from eventsvc.core.events import FileMissing, FileSeen, HashComputed, LibraryOnline
from eventsvc.core.library_state import LibraryState
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.scanner.state import ScanState
from tests.harness import Pipeline, b3, make_jpeg, running


def _seen(fid: str, size: int, mtime: int, path: str = "a.jpg") -> FileSeen:
    return FileSeen(library_id="L", file_id=fid, path=path, size=size, mtime_ns=mtime,
                    media_kind="image")  # fmt: skip


def _hashed(fid: str, h: str, size: int, mtime: int) -> HashComputed:
    return HashComputed(content_hash=h, library_id="L", file_id=fid, size=size,
                        mtime_ns=mtime, media_kind="image")  # fmt: skip


def test_the_fold_rules() -> None:
    s = LibraryState()
    assert s.apply(1, LibraryOnline(library_id="L", name="L", root="/x"))
    assert s.apply(2, _seen("f1", 10, 100))
    assert s.apply(3, _hashed("f1", "h1", 10, 100))
    assert s.live_hashes() == {"h1"}
    # A hash of another version of the file is not what the file holds.
    assert not s.apply(4, _hashed("f1", "h0", 11, 100))
    assert s.live_hashes() == {"h1"}
    # Seen again unchanged: keeps its content; changed: holds nothing known until hashed.
    assert s.apply(5, _seen("f1", 10, 100, "b.jpg"))
    assert s.files["f1"].path == b"b.jpg" and s.live_hashes() == {"h1"}
    assert s.apply(6, _seen("f1", 12, 100, "b.jpg"))
    assert s.live_hashes() == set()
    assert s.apply(7, _hashed("f1", "h2", 12, 100))
    # An older event than the one folded for the file changes nothing.
    assert not s.apply(3, _seen("f1", 99, 99))
    assert s.files["f1"].size == 12
    # Missing: gone, remembered with its seq; an older FileSeen does not bring it back.
    assert s.apply(8, FileMissing(library_id="L", file_id="f1", path="b.jpg"))
    assert s.live_hashes() == set() and s.gone == {"f1": ("L", 8)} and s.files == {}
    assert not s.apply(7, _seen("f1", 12, 100))
    assert s.apply(9, _seen("f1", 12, 100))
    assert s.gone == {} and s.files["f1"].content_hash is None  # a new location: rehashed
    assert s.libraries["L"].state == "online" and s.seq == 9


async def test_the_fold_agrees_with_the_read_model_and_the_scanner(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    a, b, c = (make_jpeg(lib / f"{n}.jpg", seed=i) for i, n in enumerate("abc"))
    libs, _ = load_libraries([str(lib)])
    async with running(Pipeline(event_log, settings, libs), media=False) as p:
        await p.scanner.tick(full=True)
        await p.settled()
        c.unlink()  # c goes: its content has no live location any more
        st = a.stat()
        os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a changes: rehashed
        await p.scanner.tick(full=True)
        await p.settled()

        state = LibraryState()
        await state.catch_up(event_log)
        assert state.seq == await event_log.last_seq()
        conn = p.db()
        try:
            rows = conn.execute(
                "SELECT file_id, content_hash FROM files WHERE content_hash IS NOT NULL"
            ).fetchall()
        finally:
            conn.close()
        assert {fid: f.content_hash for fid, f in state.files.items()} == dict(rows)
        assert state.live_hashes() == {b3(a), b3(b)} == {h for _, h in rows}

        # The scanner's start-up load (last event per subject) sees the same locations.
        loaded = await ScanState.load(event_log)
        assert loaded.files == ScanState.of(state).files
        assert loaded.gone == ScanState.of(state).gone and len(loaded.gone) == 1
        assert loaded.libraries == state.libraries


def test_the_fold_without_paths_keeps_the_same_content() -> None:
    """The reaper's fold (issue 18) keeps no paths and one string per library id, with the
    same live content as the full fold."""
    full, lean = LibraryState(), LibraryState(paths=False)
    events = [
        _seen("f1", 10, 100, "a.jpg"), _hashed("f1", "h1", 10, 100),
        _seen("f2", 20, 200, "b.jpg"), _hashed("f2", "h2", 20, 200),
        _seen("f2", 21, 200, "b.jpg"),
        FileMissing(library_id="L", file_id="f1", path="a.jpg"),
        _seen("f3", 30, 300, "c.jpg"), _hashed("f3", "h3", 30, 300),
    ]  # fmt: skip
    for seq, ev in enumerate(events, start=1):
        assert full.apply(seq, ev) == lean.apply(seq, ev)
    assert lean.live_hashes() == full.live_hashes() == {"h3"}
    assert lean.gone == full.gone == {"f1": ("L", 6)}
    assert {f.path for f in lean.files.values()} == {b""}
    assert full.files["f3"].path == b"c.jpg"
    assert lean.files["f2"].library_id is lean.files["f3"].library_id


def test_the_scanner_view_packed_while_consuming_the_fold() -> None:
    """ScanState.load packs the fold's files while dropping them (a lower peak at start):
    the same view as packing a kept fold, over two libraries, with a gone file."""
    s = LibraryState()
    for i in range(50):
        lib = "L" if i % 2 else "M"
        s.apply(i + 1, FileSeen(library_id=lib, file_id=f"f{i:02d}", path=f"d/{i}.jpg",
                                size=i, mtime_ns=10 * i, media_kind="image"))  # fmt: skip
    s.apply(99, FileMissing(library_id="L", file_id="f07", path="d/7.jpg"))
    kept = ScanState.of(s)
    consumed = ScanState.of(s, consume=True)
    assert s.files == {} and consumed.files == kept.files and consumed.gone == kept.gone
    assert set(kept.files) == {"L", "M"} and len(kept.files["L"]) == 24
    assert kept.files["M"][b"d/4.jpg"] == ("f04", 4, 40, 5) and kept.gone == {"f07": 99}
