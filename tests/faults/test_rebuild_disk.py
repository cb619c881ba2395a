"""Issue 17 item 5: `eventsvc rebuild` on a full disk ends with one clear line naming
"database or disk is full" and leaves no partial generation; on a read-only data dir it
says so in one line, no traceback. The read model that was current stays current."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from eventsvc.core.events import FileSeen
from eventsvc.core.log import EventLog
from eventsvc.server import EmbeddedNats
from projections import readmodel
from tests.faults.mounts import fill, read_only, tmpfs


async def _events(url: str, n: int) -> None:
    lg = await EventLog.connect(url)
    await lg.ensure_stream()
    try:
        await lg.publish_many(
            (
                FileSeen(
                    library_id="l", file_id=f"f{i:05d}", path=f"p/{i:05d}-{'x' * 200}.jpg",
                    size=i, mtime_ns=i, media_kind="image",
                ),
                None,
            )
            for i in range(n)
        )  # fmt: skip
    finally:
        await lg.close()


def _rebuild(data: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EVENTSVC_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "eventsvc", "rebuild", "--data-dir", str(data), "--nats-url", url],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def _generations(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "readmodel").glob("gen-*"))


def _one_clear_line(done: subprocess.CompletedProcess[str], words: str) -> str:
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("eventsvc: ")]
    assert len(lines) == 1, done.stderr  # warnings aside, one line says what failed
    assert len(done.stderr.splitlines()) <= 3, done.stderr
    assert words in lines[0], lines[0]
    assert "no transaction is active" not in lines[0]
    return lines[0]


async def test_rebuild_on_a_full_disk_says_so_and_leaves_no_partial_generation(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    await _events(nats_server.url, 3000)
    with tmpfs(tmp_path / "data", "6m") as data:
        first = _rebuild(data, nats_server.url)
        assert first.returncode == 0, first.stderr
        before = _generations(data)
        current = readmodel.current_path(data / "readmodel")
        fill(data, leave=256 * 1024)  # room to start, not to finish
        done = _rebuild(data, nats_server.url)
        line = _one_clear_line(done, "database or disk is full")
        assert line.startswith("eventsvc: "), line
        assert _generations(data) == before  # no partial generation left behind
        assert readmodel.current_path(data / "readmodel") == current


async def test_rebuild_on_a_read_only_data_dir_says_so_in_one_line(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    await _events(nats_server.url, 50)
    data = tmp_path / "data"
    first = _rebuild(data, nats_server.url)
    assert first.returncode == 0, first.stderr
    before = _generations(data)
    with read_only(data):
        done = _rebuild(data, nats_server.url)
        _one_clear_line(done, "read-only")
        assert _generations(data) == before
