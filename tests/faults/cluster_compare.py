"""A fault run against a clean run of the same library: the read model table by table
(sequences and timestamps left out: they differ between two logs) and the events per type
(nothing lost, nothing doubled). Also a 3-node nats-server cluster on loopback.

(Until the "faults" helper's shared compare lands, the cluster tests use this one.)
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from eventsvc.core.log import EventLog
from eventsvc.server import find_nats_server, free_port
from projections import readmodel

__all__ = ["NatsCluster", "differences", "event_counts", "stable_dump"]

VOLATILE = ("seq", "_seq", "_at", "state_since", "deliveries")
"""Columns that differ between two logs of the same library (positions and times)."""


def _stable_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    return [c for c in cols if not any(c == v or c.endswith(v) for v in VOLATILE)]


def stable_dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the read model at ``path`` but the checkpoint, without the volatile
    columns, rows sorted."""
    conn = readmodel.open_reader(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                " AND name != 'checkpoint' ORDER BY name"
            )
        ]
        out = {}
        for t in tables:
            cols = ", ".join(f'"{c}"' for c in _stable_columns(conn, t))
            rows = conn.execute(f'SELECT {cols} FROM "{t}"') if cols else []
            out[t] = sorted((tuple(r) for r in rows), key=repr)
        return out
    finally:
        conn.close()


async def event_counts(event_log: EventLog) -> dict[str, int]:
    """Events in the stream per type (the header bound to the subject; the subject's last
    token when there is none)."""
    counts: collections.Counter[str] = collections.Counter()
    async for batch in event_log.read():
        for raw in batch:
            etype = (raw.headers or {}).get("Eventsvc-Type") or raw.subject.split(".")[3]
            counts[etype] += 1
    return dict(sorted(counts.items()))


def differences(
    got: dict[str, list[tuple[Any, ...]]], want: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    """One line per table (or event type) that differs; [] when equal."""
    out = []
    for name in sorted(set(got) | set(want)):
        a, b = got.get(name), want.get(name)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list):
            extra = [r for r in a if r not in b][:3]
            missing = [r for r in b if r not in a][:3]
            out.append(f"{name}: {len(a)} rows vs {len(b)}; extra {extra}; missing {missing}")
        else:
            out.append(f"{name}: {a} vs {b}")
    return out


class NatsCluster:
    """Three nats-server processes on loopback, one JetStream cluster (no auth)."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = Path(root)
        self.names = [f"n{i + 1}" for i in range(size)]
        self.ports = {n: free_port() for n in self.names}
        self.routes = {n: free_port() for n in self.names}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{self.ports[n]}" for n in self.names)

    def _conf(self, name: str) -> Path:
        routes = ", ".join(f"nats-route://127.0.0.1:{self.routes[n]}" for n in self.names)
        path = self.root / f"{name}.conf"
        path.write_text(
            f"server_name: {name}\nlisten: 127.0.0.1:{self.ports[name]}\n"
            f"jetstream {{ store_dir: {self.root / name} }}\n"
            f"cluster {{ name: faults, listen: 127.0.0.1:{self.routes[name]}, "
            f"routes: [{routes}] }}\n"
        )
        return path

    def start(self, name: str | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for n in [name] if name else self.names:
            if n in self.procs and self.procs[n].poll() is None:
                continue
            log = (self.root / f"{n}.log").open("ab")
            self.procs[n] = subprocess.Popen(
                [find_nats_server(), "-c", str(self._conf(n))], stdout=log, stderr=log
            )

    def kill(self, name: str) -> None:
        """SIGKILL: no goodbye to the cluster."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def up(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def stop(self) -> None:
        for n in list(self.procs):
            proc = self.procs[n]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    async def ready(self, timeout: float = 30.0) -> None:
        """Until JetStream answers (a meta leader is elected)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                lg = await EventLog.connect(self.url, connect_timeout=2.0)
                await lg.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
