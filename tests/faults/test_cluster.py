"""A 3-node JetStream cluster on loopback (three nats-server processes, an R3 stream)
under the pipeline (scanner, hasher, media, projector): the stream leader SIGKILLed
mid-ingest, then 2 of 3 nodes down and back. During the outage the status service,
/pipeline, /healthz and `eventsvc status` say what is true (no quorum, since when);
afterwards the read model equals a clean run's, table by table, and the events per type
are the same: nothing lost, nothing doubled (issue 17 item 4 and the fault suite)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.server import EmbeddedNats
from projections import readmodel
from projections.app import create_app
from projections.status import pipeline_state
from tests.faults.cluster_compare import (
    NatsCluster,
    differences,
    event_counts,
    stable_dump,
)
from tests.harness import Pipeline, make_jpeg, running, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

FILES = 120
LATE = 15


def _settings(data: Path, url: str, replicas: int) -> Settings:
    return Settings(
        data_dir=data,
        nats_url=url,
        stream_replicas=replicas,
        watch=False,
        ack_wait=3.0,
        backoff=[0.5, 1.0, 2.0],
        max_deliver=20,
        decode_processes=1,
        media_concurrency=2,
    )


@contextlib.asynccontextmanager
async def _serve(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app on this loop (the event log's), through httpx's ASGI transport."""
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c


async def _scan(pipe: Pipeline) -> None:
    """A full scan, retried as the scanner's loop does (`Scanner.run`: "next tick
    retries") when a publish fails while the cluster elects a leader."""
    for _ in range(30):
        try:
            await pipe.scanner.tick(full=True)
            return
        except Exception:
            await asyncio.sleep(1.0)
    raise AssertionError("the scan never got through")


async def _settled(pipe: Pipeline, timeout: float = 90) -> None:
    """Pipeline.settled, saying where it stands when it does not get there."""
    try:
        await pipe.settled(timeout)
    except AssertionError:
        s, lg = pipe.settings, pipe.event_log
        seen = {"last_seq": await lg.last_seq(), "projector": vars(pipe.projector.status)}
        for name in ("hasher", "media"):
            ci = await lg.js.consumer_info(s.stream, name)
            seen[name] = (ci.num_pending, ci.num_ack_pending, ci.delivered, ci.ack_floor)
        import io

        buf = io.StringIO()
        for t in pipe._tasks:
            t.print_stack(file=buf)
        raise AssertionError(f"not settled in {timeout}s: {seen}\n{buf.getvalue()}") from None


async def _leader(event_log: EventLog) -> str:
    async def known() -> str | None:
        try:
            st = await asyncio.wait_for(event_log.stream_state(), 3)
        except Exception:
            return None
        return st.cluster.leader if st.cluster is not None and st.cluster.quorum else None

    return await wait_until(known, 60, 0.2)


async def _clean_run(tmp: Path, lib: Path) -> tuple[dict, dict]:
    server = EmbeddedNats(tmp / "clean-nats")
    server.start()
    try:
        clean_log = await EventLog.connect(server.url)
        await clean_log.ensure_stream()
        libs, _ = load_libraries([str(lib)])
        s = _settings(tmp / "clean", server.url, 1)
        async with running(Pipeline(clean_log, s, libs)) as p:
            await p.scanner.tick(full=True)
            await p.settled(90)
            tables = stable_dump(readmodel.current_path(s.readmodel_dir))
        counts = await event_counts(clean_log)
        await clean_log.close()
        return tables, counts
    finally:
        server.stop()


async def test_leader_killed_then_two_of_three_down_and_back(tmp_path: Path) -> None:
    t0 = time.monotonic()
    lib = tmp_path / "lib"
    for i in range(FILES):
        make_jpeg(lib / f"d{i % 5}" / f"{i}.jpg", i, size=(96, 72), exif=i % 3 == 0)
    cluster = NatsCluster(tmp_path / "cluster")
    cluster.start()
    try:
        await cluster.ready()
        event_log = await EventLog.connect(cluster.url)
        event_log.replicas = 3
        await event_log.ensure_stream()
        await _leader(event_log)  # the stream has a leader before the workers make consumers
        s = _settings(tmp_path / "data", cluster.url, 3)
        libs, _ = load_libraries([str(lib)])
        pipe = Pipeline(event_log, s, libs)
        async with running(pipe):
            st = await event_log.stream_state()
            assert st.replicas == 3 and st.cluster is not None and st.cluster.quorum

            # 1. the stream leader SIGKILLed mid-ingest
            scan = asyncio.create_task(_scan(pipe))

            async def midway() -> bool:  # a third of the way: scanning, hashing, deriving
                try:
                    return await event_log.last_seq() >= FILES
                except Exception:
                    return False

            await wait_until(midway, 60, 0.05)
            leader = await _leader(event_log)
            assert await event_log.last_seq() < FILES * 3, "the kill came too late"
            cluster.kill(leader)
            await scan
            new_leader = await _leader(event_log)
            assert new_leader != leader
            cluster.start(leader)  # back as a follower; it catches up
            await _settled(pipe)

            # 2. two of three down: the truth, everywhere
            survivor = await _leader(event_log)
            down = [n for n in cluster.names if n != survivor]
            for n in down:
                cluster.kill(n)

            async def no_quorum():  # type: ignore[no-untyped-def]
                state = await pipeline_state(event_log, (None, 0))
                return state if state.quorum_lost_since is not None else None

            state = await wait_until(no_quorum, 30, 0.5)
            assert state.health == "degraded"
            assert any("quorum" in p for p in state.problems), state.problems
            assert state.cluster is not None and not state.cluster.quorum
            if state.cluster.leader:  # a stale leader answered: it knows who is gone
                assert set(state.cluster.offline) == set(down)
            assert state.quorum_lost_since <= time.time()
            assert state.consumers_error, "consumers: [] with no error is not the truth"

            app = create_app(s, event_log=event_log)
            async with _serve(app) as client:
                pipeline = (await client.get("/pipeline")).json()
                health = (await client.get("/healthz")).json()
            cl = pipeline["stream"]["cluster"]
            assert cl["quorum"] is False and cl["replicas"] == 3, pipeline
            assert "no quorum" in cl["error"] and cl["lost_since"], cl
            assert pipeline["health"] == "degraded" and pipeline["consumers_error"], pipeline
            assert health["status"] == "degraded" and health["since"], health
            assert any("quorum" in p for p in health["reasons"]), health

            out = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "eventsvc", "status", "--json",
                 "--nats-url", cluster.url, "--data-dir", str(tmp_path / "data")],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            said = out.stdout + out.stderr
            assert "no JetStream enabled" not in said, said
            assert "quorum" in said, said

            # 3. back: recovery reported, and ingest goes on
            for n in down:
                cluster.start(n)

            async def recovered():  # type: ignore[no-untyped-def]
                st = await pipeline_state(event_log, (None, 0))
                return st if st.quorum_recovered_at is not None and st.health == "ok" else None

            await wait_until(recovered, 60, 0.5)
            async with _serve(app) as client:
                last: list[object] = []

                async def healthy():  # type: ignore[no-untyped-def]
                    # a node that comes back may trigger one more election: wait it out
                    last[:] = [(await client.get("/healthz")).json()]
                    if last[0] != {"status": "ok"}:
                        return None
                    return (await client.get("/pipeline")).json()

                try:
                    pipeline = await wait_until(healthy, 60, 0.5)
                except AssertionError:
                    raise AssertionError(f"not healthy again: {last}") from None
            cl = pipeline["stream"]["cluster"]
            assert cl["quorum"] is True and cl["online"] == 3 and cl["leader"], cl
            assert cl["recovered_at"] and pipeline["health"] == "ok", pipeline
            assert "lost_since" not in cl and not pipeline["problems"], pipeline

            for i in range(FILES, FILES + LATE):
                make_jpeg(lib / "late" / f"{i}.jpg", i, size=(96, 72))
            await _scan(pipe)
            await _settled(pipe)
            tables = stable_dump(readmodel.current_path(s.readmodel_dir))
        counts = await event_counts(event_log)
        await event_log.close()
    finally:
        cluster.stop()

    clean_tables, clean_counts = await _clean_run(tmp_path, lib)
    assert len(clean_tables["files"]) == FILES + LATE
    assert differences(tables, clean_tables) == []
    assert differences(counts, clean_counts) == []  # type: ignore[arg-type]
    print(json.dumps({"seconds": round(time.monotonic() - t0, 1), "events": counts}))
