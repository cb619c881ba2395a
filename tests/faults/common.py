"""The fault suite's shared parts: a generated library, `eventsvc up` as a real process on
a nats-server the test controls, and the clean-run comparison (the read model table by
table, the event counts per type: nothing lost, nothing doubled)."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsvc.core.events.wire import HDR_TYPE
from eventsvc.core.log import EventLog
from eventsvc.core.natsauth import AuthStore, Credentials
from eventsvc.server import EmbeddedNats, free_port
from projections import readmodel
from tests.harness import make_jpeg

__all__ = [
    "Snapshot",
    "Up",
    "clean_snapshot",
    "make_library",
    "nats_of",
    "shared_library",
    "snapshot",
    "wait_for",
]

WORKERS = '["hasher","media"]'

VOLATILE = ("seq", "_seq", "_at", "state_since", "config_since", "occurred_at", "mtime_ns")
"""Columns that differ between two runs of the same library (log positions, clocks)."""


_LIBS: dict[int, Path] = {}


def shared_library(n: int) -> Path:
    """A library of ``n`` generated photos, made once per test session and left
    untouched by the tests (a clean run of it serves them all: the dates taken of
    these photos come from their files' mtimes, so the very same files are needed)."""
    if n not in _LIBS:
        base = Path(tempfile.mkdtemp(prefix="eventsvc-faults-"))
        atexit.register(shutil.rmtree, base, True)
        _LIBS[n] = make_library(base / "lib", n)
    return _LIBS[n]


def make_library(root: Path, n: int, seed: int = 1) -> Path:
    for i in range(n):
        make_jpeg(root / f"d{i % 4}" / f"img{i:04d}.jpg", seed * 1000 + i)
    return root


def wait_for(pred: Any, timeout: float, what: str, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(step)


@dataclass
class Up:
    """`eventsvc up` over ``lib`` against the nats-server at ``nats.url``."""

    lib: Path
    data: Path
    nats: EmbeddedNats | None
    """None: `up` runs its own embedded server in the data dir."""
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    watch: bool = False

    def start(self) -> Up:
        self.data.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data.parent / f"{self.data.name}-up.log"
        env = {
            **os.environ,
            "EVENTSVC_WORKERS": WORKERS,
            "EVENTSVC_WATCH": "true" if self.watch else "false",
            "EVENTSVC_QUICK_INTERVAL": "2",
            "EVENTSVC_MEDIA_CONCURRENCY": "2",
            "EVENTSVC_LOG_LEVEL": "INFO",
            **self.env,
        }
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eventsvc", "up", str(self.lib), "--data-dir", str(self.data),
             *(("--nats-url", self.nats.url) if self.nats else ()), "--port", str(self.port),
             *(() if self.watch else ("--no-watch",))],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        out.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def get(self, path: str, timeout: float = 3.0) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def status(self) -> str | None:
        """/healthz's status; None while the API does not answer."""
        try:
            return str(self.get("/healthz")["status"])
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, within: float = 10.0) -> float:
        """SIGTERM; the seconds it took to exit (AssertionError past ``within``)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(
                f"up did not stop within {within}s of SIGTERM:\n{self.output()[-3000:]}"
            ) from None
        return time.monotonic() - t0

    def read_model(self) -> Path | None:
        return readmodel.current_path(self.data / "readmodel")


def _rows(conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    keep = [c for c in cols if not any(c == v or c.endswith(v) for v in VOLATILE)]
    if not keep:
        return []
    sel = ", ".join(f'"{c}"' for c in keep)
    return sorted(conn.execute(f"SELECT {sel} FROM {table}").fetchall(), key=repr)


@dataclass
class Snapshot:
    tables: dict[str, list[tuple[Any, ...]]]
    events: Counter[str]

    def diff(self, other: Snapshot) -> list[str]:
        """What differs, in words (empty: the same)."""
        out: list[str] = []
        for name in sorted(set(self.tables) | set(other.tables)):
            a, b = self.tables.get(name, []), other.tables.get(name, [])
            if a != b:
                sa, sb = set(map(repr, a)), set(map(repr, b))
                out.append(
                    f"table {name}: {len(a)} vs {len(b)} rows; only here {sorted(sa - sb)[:3]}, "
                    f"only in the reference {sorted(sb - sa)[:3]}"
                )
        if self.events != other.events:
            out.append(f"events per type: {dict(self.events)} vs {dict(other.events)}")
        return out


def table_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " AND name NOT IN ('checkpoint', 'failures')"
            )
        ]
        return {n: _rows(conn, n) for n in sorted(names)}
    finally:
        conn.close()


def nats_of(up: Up) -> tuple[str, Credentials | None]:
    """Where `up`'s NATS is, and as whom to read it (its embedded server's admin)."""
    if up.nats is not None:
        return up.nats.url, None
    store = up.data / "nats"
    return (store / "nats.url").read_text().strip(), AuthStore(store / "auth").load("admin")


async def event_counts(url: str, credentials: Credentials | None = None) -> Counter[str]:
    lg = await EventLog.connect(url, credentials=credentials)
    counts: Counter[str] = Counter()
    try:
        async for batch in lg.read():
            for raw in batch:
                counts[(raw.headers or {}).get(HDR_TYPE, raw.subject)] += 1
    finally:
        await lg.close()
    return counts


def settled(up: Up, files: int, quiet: float = 2.0) -> bool:
    """Every file hashed and thumbnailed in the read model, and nothing moved for
    ``quiet`` seconds."""
    db = up.read_model()
    if db is None or not db.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
        try:
            n_files, hashed = conn.execute(
                "SELECT count(*), count(content_hash) FROM files"
            ).fetchone()
            thumbs = conn.execute("SELECT count(*) FROM thumbnails").fetchone()[0]
            seq = readmodel.checkpoint(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    state = (n_files, hashed, thumbs, seq)
    now = time.monotonic()
    if n_files != files or hashed != files or thumbs != files:
        up.__dict__.pop("_quiet", None)
        return False
    last = up.__dict__.get("_quiet")
    if last is None or last[0] != state:
        up.__dict__["_quiet"] = (state, now)
        return False
    return now - last[1] >= quiet


async def snapshot(up: Up) -> Snapshot:
    db = up.read_model()
    assert db is not None
    return Snapshot(table_rows(db), await event_counts(*nats_of(up)))


_CLEAN: dict[int, Snapshot] = {}
"""Clean runs by library size (libraries of ``make_library(root, n)`` are the same
files, whatever their root: one clean run serves every test of that size)."""


async def clean_snapshot(lib: Path, tmp: Path, files: int, timeout: float = 90) -> Snapshot:
    """The reference: ``lib`` (``shared_library(files)``) indexed by an `up` nothing
    happens to, once per session."""
    assert lib == _LIBS.get(files), "compare runs of shared_library(files) only"
    if files not in _CLEAN:
        _CLEAN[files] = await _clean_run(lib, tmp, files, timeout)
    return _CLEAN[files]


async def _clean_run(lib: Path, tmp: Path, files: int, timeout: float) -> Snapshot:
    with EmbeddedNats(tmp / "clean-nats") as server:
        up = Up(lib, tmp / "clean-data", server).start()
        try:
            wait_for(lambda: settled(up, files), timeout, "clean run settles")
            assert up.alive, up.output()[-3000:]
            up.terminate()
            return await snapshot(up)
        finally:
            up.kill()


@contextlib.contextmanager
def running(up: Up) -> Iterator[Up]:
    up.start()
    try:
        yield up
    finally:
        up.kill()
