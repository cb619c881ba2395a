"""`eventsvc inference` (a real process) stops mid-run and comes back on its port: the
clip and faces workers calling it pause and say why, hold their messages without
spending JetStream deliveries, and finish every image once it answers again."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import httpx

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library, Settings
from tests.harness import Pipeline, cli, make_jpeg, running, wait_until


class InferenceProcess:
    """`eventsvc inference` on a fixed port, started and stopped at will."""

    def __init__(self, data: Path, model: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.data, self.model = data, model
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = cli("inference", "--data-dir", str(self.data), "--port", str(self.port),
                        "--model", str(self.model))  # fmt: skip

        async def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise AssertionError(f"eventsvc inference exited: {out}")
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(self.url + "/v1/info", timeout=2)).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(answers, 60, 0.1)

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 20)
            self.proc = None


async def test_inference_restart_mid_run_holds_and_finishes(
    event_log: EventLog, settings: Settings, tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    service = InferenceProcess(tmp_path / "inference", tiny_models[0])
    await service.start()
    root = tmp_path / "lib"
    for i in range(2):
        make_jpeg(root / f"before{i}.jpg", i + 1)
    s = settings.model_copy(
        update={
            "workers": ["hasher"], "clip_inference_url": service.url, "inference_retries": 1,
            "faces_inference_url": service.url, "clip_recheck_interval": 0.3,
            "faces_recheck_interval": 0.3, "clip_batch": 4, "faces_concurrency": 2,
        }
    )  # fmt: skip
    pipe = Pipeline(event_log, s, [Library(id="l", name="l", root=root)])
    try:
        async with running(pipe, media=False, projector=False, workers=("clip", "faces")) as p:
            clip, faces = p.workers["clip"], p.workers["faces"]
            await p.scanner.tick(full=True)
            await wait_until(lambda: clip.stats.encoded == 2 and faces.stats.images == 2, 60)
            await service.stop()  # the inference host goes away
            for i in range(4):
                make_jpeg(root / f"during{i}.jpg", i + 10)
            await p.scanner.tick(full=True)
            t0 = time.monotonic()
            for w in (clip, faces):  # everything fetched is held, nothing fetched after
                await wait_until(lambda w=w: w.paused and w.stats.held == 4, 60)

            async def shown(name: str) -> bool:
                st = await event_log.get_status(f"worker.{name}")
                return bool(st and service.url in (st["model_error"] or "") and st["held"] == 4)

            await wait_until(lambda: shown("clip"), 20)
            await wait_until(lambda: shown("faces"), 20)
            # Out for longer than ack_wait and than the old nak delays of every delivery.
            outage = max(s.max_deliver * max(s.backoff), 1.5 * s.ack_wait)
            await asyncio.sleep(max(0.0, outage - (time.monotonic() - t0)))
            await service.start()  # back on the same port
            await wait_until(lambda: clip.stats.encoded == 6 and faces.stats.images == 6, 60)
            hashed = len(await p.events("HashComputed"))
            assert hashed == 6
            assert len(await p.events("ClipEncoded")) == len(await p.events("FacesDetected")) == 6
            assert await p.events("DerivationFailed") == []
            for w in (clip, faces):
                assert not w.paused and w.stats.held == 0 and w.stats.model_error is None
                assert w.stats.retried == 0 and w.stats.failed == 0
                ci = await event_log.js.consumer_info(s.stream, w.name)
                assert ci.delivered.consumer_seq == hashed  # one delivery each: none spent
                st = await event_log.get_status(f"worker.{w.name}")
                assert st is not None and st["model_error"] is None and st["held"] == 0
    finally:
        await service.stop()
