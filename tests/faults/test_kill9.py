"""`kill -9` of `eventsvc up` at random moments (seeded: FAULTS_SEED, default 17) while it
ingests, N times, then a run left alone: nothing lost, nothing doubled (the read model
table by table and the event counts per type equal a clean run's)."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

from eventsvc.server import EmbeddedNats
from tests.faults.common import Up, clean_snapshot, settled, shared_library, snapshot, wait_for

FILES = 100
KILLS = 5


async def test_kill_9_of_up_at_random_moments_loses_and_doubles_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("FAULTS_SEED", "17"))
    rng = random.Random(seed)
    lib = shared_library(FILES)
    reference = await clean_snapshot(lib, tmp_path, FILES)
    with EmbeddedNats(tmp_path / "nats") as server:
        up = Up(lib, tmp_path / "data", server)
        try:
            for i in range(KILLS):
                up.start()
                at = rng.uniform(1.5, 7.0)
                await asyncio.sleep(at)
                assert up.alive, up.output()[-3000:]
                up.kill()  # SIGKILL: no cleanup at all
                print(f"kill {i + 1}: after {at:.1f}s")
            up.start()
            wait_for(lambda: settled(up, FILES), 120, f"settles after {KILLS} kills (seed {seed})")
            up.terminate()
            got = await snapshot(up)
            assert got.diff(reference) == [], (seed, got.diff(reference))
        finally:
            up.kill()
