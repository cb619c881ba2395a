"""soak: `eventsvc up` indexing a library that keeps changing while faults are injected
at random (seeded), then compared with a clean run of the final library.

For ``--minutes`` (default 30; ``--quick``: 2) the library gets new, rewritten and deleted
files every few seconds, and every ``--fault-every`` seconds (about) one fault: ``kill -9``
of `up`, SIGTERM of `up` (it must stop within 10 s), or the NATS server stopped for a few
seconds (now and then longer than the client's reconnect budget) and started again on the
same store and port. A `up` that exits by itself is counted (``unexpected_exits``) and
started again. Then everything runs until settled and a clean `up` indexes the final
library on a fresh server; the two read models are compared on the live state (files,
their contents, media facts and thumbnails, libraries, failures), and once-only facts are
checked for doubles in the soaked log. value = differences found (goal 0).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import Outcome, base_parser, run_main, say, scratch_dir
from bench.upproc import UpProcess, small_jpeg
from eventsvc.core.log import EventLog
from eventsvc.server import EmbeddedNats
from projections import readmodel

__all__ = ["main"]

GOAL = "<= 0"
ONCE = ("HashComputed", "ExifExtracted", "ThumbnailReady")
"""Facts derived once per input: two in the log are a double."""


SOAK_ENV = {
    "EVENTSVC_WORKERS": '["hasher","media"]',
    "EVENTSVC_QUICK_INTERVAL": "2",
    "EVENTSVC_FULL_INTERVAL": "6",
    "EVENTSVC_ACK_WAIT": "5",
    "EVENTSVC_DECODE_PROCESSES": "1",
    "EVENTSVC_LOG_LEVEL": "WARNING",
}
"""`up`'s settings in a soak: hasher and media only, fast ticks and redeliveries."""


def _up(lib: Path, data: Path, url: str, log: Path) -> UpProcess:
    """One `eventsvc up` process against the external NATS at ``url``."""
    return UpProcess(lib, data, log, env=SOAK_ENV, args=["--nats-url", url])


def _live(data: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The read model's live state: files (without sequences and times), and what is
    known of the contents they hold."""
    conn = readmodel.open_reader(readmodel.current_path(data / "readmodel"))
    try:
        files = conn.execute(
            "SELECT library_id, path, size, media_kind, content_hash, date_taken, date_source"
            " FROM files"
        ).fetchall()
        live = "(SELECT content_hash FROM files WHERE content_hash IS NOT NULL)"
        media_cols = ", ".join(
            r[1] for r in conn.execute("PRAGMA table_info(media)") if not r[1].endswith("seq")
        )
        out = {
            "files": files,
            "content": conn.execute(
                "SELECT content_hash, size, media_kind, phash, dhash, width, height, "
                f"decode_error FROM content WHERE content_hash IN {live}"
            ).fetchall(),
            "media": conn.execute(
                f"SELECT {media_cols} FROM media WHERE content_hash IN {live}"
            ).fetchall(),
            "thumbnails": conn.execute(
                "SELECT content_hash, sizes, width, height FROM thumbnails "
                f"WHERE content_hash IN {live}"
            ).fetchall(),
            "libraries": conn.execute("SELECT library_id, name, root, state FROM libraries")
            .fetchall(),
            "failures": conn.execute("SELECT stage, reason, permanent FROM failures").fetchall(),
        }  # fmt: skip
        return {k: sorted((tuple(r) for r in v), key=repr) for k, v in out.items()}
    finally:
        conn.close()


async def _doubles(url: str) -> dict[str, int]:
    """Once-only facts that appear more than once on one subject, per type."""
    lg = await EventLog.connect(url)
    try:
        seen: Counter[str] = Counter()
        async for batch in lg.read():
            for raw in batch:
                if raw.subject.rsplit(".", 1)[-1] in ONCE:
                    seen[raw.subject] += 1
        out: Counter[str] = Counter()
        for subject, n in seen.items():
            if n > 1:
                out[subject.rsplit(".", 1)[-1]] += n - 1
        return dict(out)
    finally:
        await lg.close()


def _differences(got: dict[str, list[Any]], want: dict[str, list[Any]]) -> list[str]:
    out = []
    for t in sorted(want):
        if got.get(t) != want[t]:
            extra = [r for r in got.get(t, []) if r not in want[t]][:2]
            missing = [r for r in want[t] if r not in got.get(t, [])][:2]
            out.append(f"{t}: extra {extra} missing {missing}")
    return out


def _soak(root: Path, minutes: float, fault_every: float, seed: int) -> Outcome:
    rnd = random.Random(seed)
    lib, data = root / "lib", root / "data"
    n = 0
    for n in range(40):
        small_jpeg(lib / f"d{n % 4}" / f"{n}.jpg", n)
    server = EmbeddedNats(root / "nats")
    server.start()
    up = _up(lib, data, server.url, root / "up.log")
    up.start()
    faults: Counter[str] = Counter()
    unexpected, slow_stops, changes = 0, 0, Counter[str]()
    end = time.monotonic() + minutes * 60
    next_fault = time.monotonic() + rnd.uniform(0.5, 1.5) * fault_every
    try:
        while time.monotonic() < end:
            time.sleep(rnd.uniform(1.0, 3.0))
            if not up.alive():
                unexpected += 1
                say(f"up exited by itself (rc {up.proc.returncode if up.proc else None})")
                up.start()
            files = sorted(lib.rglob("*.jpg"))
            kind = rnd.choice(["add", "add", "rewrite", "delete"])
            if kind == "add" or not files:
                n += 1
                small_jpeg(lib / f"d{n % 4}" / f"{n}.jpg", n)
            elif kind == "rewrite":
                small_jpeg(rnd.choice(files), 10_000 + n + rnd.randrange(10_000))
            else:
                rnd.choice(files).unlink()
            changes[kind] += 1
            if time.monotonic() < next_fault:
                continue
            next_fault = time.monotonic() + rnd.uniform(0.5, 1.5) * fault_every
            fault = rnd.choice(["kill -9 up", "SIGTERM up", "NATS restart", "NATS long outage"])
            say(f"fault: {fault}")
            if fault == "kill -9 up":
                up.kill()
                up.start()
            elif fault == "SIGTERM up":
                took = up.term()
                slow_stops += took > 10
                up.start()
            else:
                server.stop()
                time.sleep(rnd.uniform(2, 6) if fault == "NATS restart" else rnd.uniform(8, 15))
                server.start()
            faults[fault] += 1
        say("faults over; settling")
        if not up.alive():
            unexpected += 1
            up.start()
        time.sleep(8)  # a full scan after the last change
        settled = up.settled(180) is not None
        up.term()
        soaked = _live(data)
        doubles = asyncio.run(_doubles(server.url))
    finally:
        up.kill()
        server.stop()

    say("clean run of the final library")
    clean_server = EmbeddedNats(root / "clean-nats")
    clean_server.start()
    clean = _up(lib, root / "clean", clean_server.url, root / "clean.log")
    clean.start()
    try:
        time.sleep(8)
        clean_settled = clean.settled(180) is not None
        clean.term()
        want = _live(root / "clean")
    finally:
        clean.kill()
        clean_server.stop()
    diffs = _differences(soaked, want)
    diffs += [f"{t}: {k} doubled" for t, k in doubles.items()]
    if not settled:
        diffs.append("the soaked run did not settle in 180 s")
    if not clean_settled:
        diffs.append("the clean run did not settle in 180 s")
    for d in diffs:
        say(f"difference: {d}")
    return {
        "value": len(diffs),
        "limit": 0,
        "unit": "differences",
        "ratio": len(diffs),
        "goal": GOAL,
        "minutes": minutes,
        "seed": seed,
        "faults_survived": sum(faults.values()) if not unexpected else 0,
        "faults": dict(faults),
        "unexpected_exits": unexpected,
        "slow_stops": slow_stops,
        "changes": dict(changes),
        "files": len(want["files"]),
        "differences": diffs[:10],
    }


def main(argv: list[str]) -> int:
    p = base_parser("soak", __doc__)
    p.add_argument("--minutes", type=float, default=None, help="how long (default 30; --quick 2)")
    p.add_argument("--fault-every", type=float, default=None, help="seconds between faults")
    p.add_argument("--seed", type=int, default=17)
    a = p.parse_args(argv)
    minutes = a.minutes if a.minutes is not None else (2.0 if a.quick else 30.0)
    every = a.fault_every if a.fault_every is not None else (15.0 if a.quick else 30.0)

    def body() -> Outcome:
        with scratch_dir("soak", a.tmp, a.keep) as root:
            return _soak(root, minutes, every, a.seed)

    return run_main("soak", body, a.strict)
