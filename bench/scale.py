"""scale: memory and start-up of `eventsvc up` on an indexed library of FILES files.

Setup (not timed): a library of FILES files (``bench.synth``: sparse files of their
logged size and mtime, and the log the pipeline would have written for them, every
consumer caught up) plus REAL small JPEGs on disk that `up` indexes for real.

1. `up` on the empty library once (it configures the library and creates its consumers);
2. the synthetic library written into its log and on disk (``bench.synth``);
3. `up` (run 1): projects the read model, indexes the REAL files, settles; stopped;
4. `up` (run 2, measured): start-up time until ``GET /photos`` answers 200 with items;
   then settled, IDLE seconds idle, and the RSS of every process of `up` (the Python
   process, its children, nats-server) from /proc.

value = total RSS (MB); limit = the goal (400 MB up to 100k files, 1.5 GB at 1M,
linear between); ratio = value / limit, goal <= 1. Extra keys: each process's RSS, KB
per file, start-up seconds (goal <= 10 s at 1M), events each `up` run wrote (run 2
must write none: no re-derivation, no FileMissing), nats-server's own figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import Outcome, base_parser, run_main, say, scratch_dir
from bench.synth import (
    catch_up_consumers,
    events_per_file,
    plan_files,
    publish_library,
    write_files,
)
from bench.upproc import UpProcess, small_jpeg
from eventsvc.core.library_ids import log_library_ids
from eventsvc.core.log import EventLog
from eventsvc.server import EmbeddedNats

__all__ = ["Up", "goal_mb", "main", "rss_tree"]

PAGE = os.sysconf("SC_PAGE_SIZE")


def goal_mb(files: int) -> float:
    """400 MB up to 100k files, 1500 MB at 1M, linear between (and beyond)."""
    if files <= 100_000:
        return 400.0
    return 400.0 + (files - 100_000) * (1100.0 / 900_000)


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def rss_tree(pid: int) -> list[dict[str, Any]]:
    """Every process of the tree under ``pid`` (itself included): pid, name, RSS MB."""
    kids = _children()
    todo, out = [pid], []
    while todo:
        p = todo.pop()
        st = _status(p)
        if st:
            rss_kb = int(st.get("VmRSS", "0 kB").split()[0])
            name = st.get("Name", "?")
            with contextlib.suppress(OSError), open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
                if name.startswith("python") and len(argv) > 2:
                    name = "python " + " ".join(a.decode(errors="replace") for a in argv[1:4])
            out.append({"pid": p, "name": name, "rss_mb": round(rss_kb / 1024, 1)})
        todo += kids.get(p, [])
    return out


class Up(UpProcess):
    """One `eventsvc up` on ``lib`` with its embedded nats-server under ``data``."""

    def __init__(self, lib: Path, data: Path, log: Path, env: dict[str, str]) -> None:
        super().__init__(lib, data, log, env=env)

    def stop(self) -> None:
        self.term(60.0)  # a large stream's index takes a while to write

    def serving(self, timeout: float, items: bool) -> float:
        """Seconds from start until GET /photos answers 200 (with items when ``items``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise SystemExit(f"up exited early; see {self.log}")
            got = self.get("/photos?limit=10")
            if got is not None and (not items or got.get("items")):
                return time.monotonic() - self.started
            time.sleep(0.05)
        raise SystemExit(f"up did not serve /photos in {timeout:.0f}s; see {self.log}")

    paused = ("clip",)
    """Consumers of workers paused without a model (CLIP): their backlog waits. The
    background re-derivations (``*-rederive``, once per deriver version) do not count
    either: on a library indexed by this version they have nothing to do."""

    def wait_settled(self, timeout: float) -> int:
        """The stream's last sequence once settled (but on paused workers and the
        background re-derivations); SystemExit after ``timeout``."""
        seq = self.settled(
            timeout,
            counts=lambda name: not name.startswith(self.paused) and not name.endswith("-rederive"),
            problems=True,
        )
        if seq is None:
            raise SystemExit(f"up did not settle in {timeout:.0f}s; see {self.log}")
        return seq


async def _synthesize(data: Path, lib: Path, files: int, real: int, clip: bool) -> dict[str, Any]:
    """The synthetic library on disk and in the log of ``up``'s own store (the embedded
    server started without authorization on the same store, as nobody else runs)."""
    server = EmbeddedNats(data / "nats", auth=False)
    url = server.start()
    try:
        log = await EventLog.connect(url, name="bench-scale")
        try:
            ids = await log_library_ids(log)
            lib_id = ids.get(str(lib)) or next(iter(ids.values()), None)
            if lib_id is None:
                raise SystemExit(f"the log has no library for {lib}: {ids}")
            plan = plan_files(files - real)
            t0 = time.perf_counter()
            write_files(lib / "synth", plan)
            say(f"wrote {len(plan)} sparse files in {time.perf_counter() - t0:.1f}s")
            for k in range(real):
                small_jpeg(
                    lib / "real" / f"{k // 500:03d}" / f"IMG_{k:05d}.jpg",
                    k,
                    size=(160, 120),
                    patches=8,
                    quality=90,
                )
            say(f"wrote {real} real JPEGs")
            synth_plan = [type(f)(f"synth/{f.path}", f.size, f.mtime_ns) for f in plan]
            t0 = time.perf_counter()
            last = await publish_library(log, lib_id, synth_plan, clip=clip, progress=say)
            pub_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            acked = await catch_up_consumers(log)
            say(f"consumers caught up in {time.perf_counter() - t0:.1f}s: {acked}")
            info = await log.js.stream_info(log.stream)
            return {
                "library_id": lib_id, "last_seq": last, "publish_s": round(pub_s, 1),
                "stream_messages": info.state.messages,
                "stream_mb": round(info.state.bytes / 1e6),
            }  # fmt: skip
        finally:
            await log.close()
    finally:
        server.stop()


def _env(extra: list[str]) -> dict[str, str]:
    env = {
        "HF_HUB_OFFLINE": "1",
        "EVENTSVC_LOG_LEVEL": "WARNING",
        "EVENTSVC_CLIP_MODEL_DIR": "/nonexistent/eventsvc-bench-scale",  # CLIP paused
        # the one pass of a new background re-derivation consumer over every content
        # (an indexed library made it long ago; the synthetic one has no such consumer)
        "EVENTSVC_REDERIVE_BACKGROUND": "false",
    }
    for kv in extra:
        k, _, v = kv.partition("=")
        env[k] = v
    return env


def _measure(root: Path, env: dict[str, str], idle: float, seq0: int) -> dict[str, Any]:
    """`up` started on an indexed library: start-up to serving, events it wrote until
    settled, then after ``idle`` seconds the RSS of each of its processes."""
    u = Up(root / "lib", root / "data", root / "up.log", env)
    try:
        u.start()
        slow = 600.0
        t = u.serving(slow, items=True)
        say(f"up: serving /photos after {t:.2f}s")
        seq = u.wait_settled(slow)
        say(f"up: settled; it wrote {seq - seq0} events; idle {idle:.0f}s")
        time.sleep(idle)
        assert u.proc is not None
        procs = rss_tree(u.proc.pid)
        varz = _varz(root / "data" / "nats" / "nats.monitor.url")
    finally:
        u.stop()
    for p in procs:
        say(f"  pid {p['pid']:>7} {p['rss_mb']:8.1f} MB  {p['name']}")
    return {"startup_s": t, "seq": seq, "wrote": seq - seq0, "procs": procs, "varz": varz}


def _varz(url_file: Path) -> dict[str, Any] | None:
    """The embedded nats-server's own figures (its monitoring URL is in ``url_file``)."""
    try:
        url = url_file.read_text().strip()
        with urllib.request.urlopen(f"{url}/varz", timeout=5) as r:
            v = json.load(r)
    except (OSError, ValueError):
        return None
    js = v.get("jetstream", {}).get("stats", {})
    return {
        "mem_mb": round(v.get("mem", 0) / 2**20, 1),
        "store_mb": round(js.get("store", 0) / 1e6),
    }


def _outcome(files: int, real: int, idle: float, clip: bool, m: dict[str, Any]) -> Outcome:
    procs = m["procs"]
    total = sum(p["rss_mb"] for p in procs)
    nats = sum(p["rss_mb"] for p in procs if p["name"] == "nats-server")
    py = procs[0]["rss_mb"] if procs else 0.0
    limit = goal_mb(files)
    return {
        "value": round(total, 1), "limit": round(limit), "unit": "MB RSS of up (all processes)",
        "ratio": round(total / limit, 3), "goal": "<= 1.0", "files": files, "real_files": real,
        "kb_per_file": round(total * 1024 / files, 2), "up_python_mb": py, "nats_server_mb": nats,
        "children_mb": round(total - py - nats, 1), "startup_s": round(m["startup_s"], 2),
        "startup_goal_s": 10.0, "events_restart": m["wrote"],
        "events_per_file": events_per_file(clip), "idle_s": idle, "clip": clip,
        "processes": [f"{p['name'][:40]}={p['rss_mb']}" for p in procs], "varz": m["varz"],
        "load": round(os.getloadavg()[0], 1),
    }  # fmt: skip


def _scale(root: Path, files: int, real: int, idle: float, clip: bool, extra: list[str]) -> Outcome:
    lib, data = root / "lib", root / "data"
    lib.mkdir()
    env = _env(extra)
    u0 = Up(lib, data, root / "up.log", env)
    try:
        u0.start()
        u0.serving(120, items=False)
        u0.wait_settled(120)
    finally:
        u0.stop()
    say("up 0 (empty library): library configured, consumers made")

    syn = asyncio.run(_synthesize(data, lib, files, real, clip))
    say(f"synthetic log: {syn}")

    u1 = Up(lib, data, root / "up.log", env)
    try:
        u1.start()
        slow = max(120.0, files / 1000)
        t1 = u1.serving(slow, items=True)
        seq1 = u1.wait_settled(slow + real)
    finally:
        u1.stop()
    wrote1 = seq1 - syn["last_seq"]
    say(f"up 1: serving after {t1:.1f}s, settled; it wrote {wrote1} events")
    (root / "scale.json").write_text(
        json.dumps({"files": files, "real": real, "clip": clip, "seq": seq1})
    )
    m = _measure(root, env, idle, seq1)
    out = _outcome(files, real, idle, clip, m)
    return {**out, "events_run1": wrote1, "synth": syn}


def _reuse(root: Path, idle: float, extra: list[str]) -> Outcome:
    """Measure a kept scratch dir's `up` again (other settings in ``extra``)."""
    meta = json.loads((root / "scale.json").read_text())
    m = _measure(root, _env(extra), idle, int(meta["seq"]))
    meta["seq"] = m["seq"]
    (root / "scale.json").write_text(json.dumps(meta))
    out = _outcome(meta["files"], meta["real"], idle, meta["clip"], m)
    return {**out, "reused": str(root), "env": extra}


def main(argv: list[str]) -> int:
    p = base_parser("scale", __doc__)
    p.add_argument("--files", type=int, default=100_000, help="files in the library (100000)")
    p.add_argument("--real", type=int, default=1000, help="real JPEGs among them (1000)")
    p.add_argument("--idle", type=float, default=60.0, help="idle seconds before RSS (60)")
    p.add_argument("--clip", action="store_true", help="ClipEncoded too (512 floats each)")
    p.add_argument(
        "--env", action="append", default=[], metavar="K=V",
        help="environment of up (e.g. EVENTSVC_NATS_MEMORY_LIMIT=off); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--reuse", type=Path, default=None, metavar="DIR",
        help="measure up again on a scratch dir kept with --keep (no setup)",
    )  # fmt: skip
    a = p.parse_args(argv)
    if a.quick:
        a.files, a.real, a.idle = 5000, 50, 5.0

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM as Ctrl-C: the finally blocks stop up, remove scratch

    signal.signal(signal.SIGTERM, interrupted)

    def body() -> Outcome:
        if a.reuse is not None:
            return _reuse(a.reuse, a.idle, a.env)
        with scratch_dir("scale", a.tmp, a.keep) as tmp:
            return _scale(tmp, a.files, a.real, a.idle, a.clip, a.env)

    return run_main("scale", body, a.strict)
