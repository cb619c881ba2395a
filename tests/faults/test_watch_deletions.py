"""The watcher sees 60 % of a library deleted under a running `eventsvc up`: the library
is marked stale (LibraryStale), and no FileMissing is recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from eventsvc.server import EmbeddedNats
from tests.faults.common import Up, event_counts, make_library, settled, wait_for

FILES = 100


def _state(up: Up) -> str | None:
    db = up.read_model()
    if db is None:
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
    try:
        row = conn.execute("SELECT state FROM libraries").fetchone()
    finally:
        conn.close()
    return str(row[0]) if row else None


async def test_watched_deletion_of_60_percent_gives_library_stale_and_no_file_missing(
    tmp_path: Path,
) -> None:
    lib = make_library(tmp_path / "lib", FILES)
    with EmbeddedNats(tmp_path / "nats") as server:
        up = Up(lib, tmp_path / "data", server, watch=True).start()
        try:
            wait_for(lambda: settled(up, FILES), 90, "indexed")
            files = sorted(lib.rglob("*.jpg"))
            for f in files[: FILES * 6 // 10]:
                f.unlink()
            wait_for(lambda: _state(up) == "stale", 30, "library stale")
            counts = await event_counts(server.url)
            assert counts.get("LibraryStale", 0) >= 1, counts
            assert counts.get("FileMissing", 0) == 0, counts
            assert up.alive, up.output()[-3000:]
        finally:
            up.kill()
