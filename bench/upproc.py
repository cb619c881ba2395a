"""`eventsvc up` as a subprocess for benches (``scale``, ``soak``): start it, ask its API,
wait until it has settled, stop it; and the small generated photos they feed it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from eventsvc.server import free_port

__all__ = ["UpProcess", "small_jpeg"]


def small_jpeg(
    path: Path, seed: int, size: tuple[int, int] = (96, 72), patches: int = 6, quality: int = 85
) -> None:
    """A small JPEG of one colour with ``patches`` coloured squares (distinct per seed)."""
    rnd = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, tuple(rnd.randrange(256) for _ in range(3)))
    w, h = max(1, size[0] // 6), max(1, size[1] // 6)
    for _ in range(patches):
        x, y = rnd.randrange(size[0] - w), rnd.randrange(size[1] - h)
        img.paste(tuple(rnd.randrange(256) for _ in range(3)), (x, y, x + w, y + h))
    img.save(path, quality=quality)


class UpProcess:
    """One `eventsvc up LIB --no-watch` on ``data``, its output appended to ``log``."""

    def __init__(
        self, lib: Path, data: Path, log: Path, *,
        env: dict[str, str] | None = None, args: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.lib, self.data, self.log = lib, data, log
        self.env = dict(env or {})
        self.args = list(args)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "eventsvc", "up", str(self.lib), "--no-watch",
               "--data-dir", str(self.data), "--port", str(self.port), *self.args]  # fmt: skip
        with self.log.open("ab") as out:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                cmd, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def term(self, timeout: float = 30.0) -> float:
        """SIGTERM; seconds until it stopped (SIGKILL after ``timeout``)."""
        if self.proc is None or not self.alive():
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return time.monotonic() - t0

    def get(self, path: str, timeout: float = 10.0) -> Any:
        """The API's JSON answer to GET ``path``; None when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.api}{path}", timeout=timeout) as r:
                return json.load(r)
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def settled(
        self, timeout: float, *, counts: Callable[[str], bool] = lambda name: True,
        problems: bool = False,
    ) -> int | None:  # fmt: skip
        """The stream's last sequence once the projector has no lag, no consumer that
        ``counts`` has pending work (and, unless ``problems``, /pipeline names no
        problem), the stream unchanged for 3 polls a second apart; None at ``timeout``."""
        deadline, last, still = time.monotonic() + timeout, None, 0
        while time.monotonic() < deadline:
            p = self.get("/pipeline", timeout=5.0)
            if (
                p
                and p["projector"]["lag"] == 0
                and (problems or not p["problems"])
                and all(
                    c["pending"] == 0 and c["ack_pending"] == 0
                    for c in p["consumers"]
                    if counts(c["name"])
                )
            ):
                seq = p["stream"].get("last_seq")
                still = still + 1 if seq == last else 0
                last = seq
                if still >= 3:
                    return int(seq or 0)
            else:
                still = 0
            time.sleep(1.0)
        return None
