"""Real parts for tests: a nats-server, the pipeline in-process, generated media."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import blake3
from PIL import Image

from eventsvc.components import make_worker
from eventsvc.core.events import decode
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library, Settings
from eventsvc.scanner import Scanner
from projections import readmodel
from projections.projector import Projector

__all__ = ["Pipeline", "b3", "cli", "make_jpeg", "make_video", "wait_until"]


def b3(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def make_jpeg(
    path: Path, seed: int = 0, size: tuple[int, int] = (96, 64), exif: bool = False
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    for x in range(0, size[0], 8):  # some structure so perceptual hashes differ
        img.putpixel((x, (x * seed) % size[1]), (255, 255, 255))
    kwargs: dict[str, Any] = {"quality": 90}
    if exif:
        ex = Image.Exif()
        ex[0x010F] = "TestCam"
        ex[0x0110] = "Model 1"
        ex[0x0132] = "2024:05:06 07:08:09"  # ModifyDate: not a date-taken source
        ex.get_ifd(0x8769)[0x9003] = "2023:01:02 12:34:56"  # DateTimeOriginal
        kwargs["exif"] = ex
    img.save(path, **kwargs)
    return path


def make_video(path: Path, seconds: float = 1.0) -> Path:
    """A tiny real H.264 video made by the ffmpeg of imageio-ffmpeg.

    No fallback: a test that asks for a video gets a real one or fails here, loudly,
    naming what is missing (imageio-ffmpeg is in the `video` extra).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise AssertionError(f"make_video needs imageio-ffmpeg's ffmpeg: {exc}") from exc
    try:
        subprocess.run(
            [
                ffmpeg,
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc=duration={seconds}:size=160x120:rate=10",
                "-pix_fmt",
                "yuv420p",
                "-c:v",
                "libx264",
                str(path),
            ],
            check=True,
            timeout=60,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace")
        raise AssertionError(f"ffmpeg could not make {path}: {err}") from exc
    except (subprocess.SubprocessError, OSError) as exc:
        raise AssertionError(f"ffmpeg could not make {path}: {exc}") from exc
    if path.stat().st_size == 0:
        raise AssertionError(f"ffmpeg wrote an empty {path}")
    return path


async def wait_until(pred: Callable[[], Any], timeout: float = 30.0, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        await asyncio.sleep(step)


def cli(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
    """Start `eventsvc ARGS` as a real process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "eventsvc", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kw,
    )


class Pipeline:
    """Scanner, hasher and projector in-process on a real nats-server and SQLite."""

    def __init__(self, event_log: EventLog, settings: Settings, libraries: list[Library]) -> None:
        self.event_log = event_log
        self.settings = settings
        self.libraries = libraries
        self.scanner = Scanner(event_log, libraries, settings)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.hasher: Any = None
        self.projector: Projector | None = None

    async def start(
        self,
        *,
        hasher: bool = True,
        projector: bool = True,
        media: bool = True,
        workers: tuple[str, ...] = (),
    ) -> Pipeline:
        """Start the scanner's state, the named workers and the projector. ``workers``
        adds workers beyond hasher/media by name (``clip``, ``faces``, ``playlist``…);
        they are kept in ``self.workers``."""
        await self.scanner.load()
        if hasher:
            self.hasher = await make_worker("hasher", self.event_log, self.settings, self.libraries)
            self._tasks.append(asyncio.create_task(self.hasher.run(self._stop)))
        self.media = None
        if media:
            self.media = await make_worker("media", self.event_log, self.settings, self.libraries)
            self._tasks.append(asyncio.create_task(self.media.run(self._stop)))
        self.workers: dict[str, Any] = {}
        for name in workers:
            w = await make_worker(name, self.event_log, self.settings, self.libraries)
            self.workers[name] = w
            self._tasks.append(asyncio.create_task(w.run(self._stop)))
        if projector:
            self.projector = Projector(self.event_log, self.settings.readmodel_dir, batch=500)
            self._tasks.append(asyncio.create_task(self.projector.run(self._stop)))
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def settled(self, timeout: float = 30.0) -> None:
        """Until the hasher has nothing pending and the projector is at the stream's end."""

        async def done() -> bool:
            last = await self.event_log.last_seq()
            names = ["hasher", "media"] if self.media else ["hasher"]
            for name in [*names, *self.workers]:
                ci = await self.event_log.js.consumer_info(self.settings.stream, name)
                if ci.num_pending or ci.num_ack_pending:
                    return False
            # a worker may have published its output and acked between the two reads: only
            # a stream end unchanged across the idle consumers is the end
            if await self.event_log.last_seq() != last:
                return False
            return self.projector is None or self.projector.status.last_seq >= last

        await wait_until(done, timeout)

    def db(self):  # type: ignore[no-untyped-def]
        return readmodel.open_reader(readmodel.current_path(self.settings.readmodel_dir))

    async def events(self, etype: str | None = None) -> list[tuple[int, Any]]:
        out = []
        async for batch in self.event_log.read():
            for raw in batch:
                with contextlib.suppress(Exception):
                    ev = decode(raw.data, raw.headers)
                    if etype is None or ev.type == etype:
                        out.append((raw.seq, ev))
        return out


@contextlib.asynccontextmanager
async def running(pipeline: Pipeline, **kw: bool) -> AsyncIterator[Pipeline]:
    await pipeline.start(**kw)
    try:
        yield pipeline
    finally:
        await pipeline.stop()
