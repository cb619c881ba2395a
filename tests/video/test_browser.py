"""A browser plays a generated playlist: headless Chromium (native HLS, Chromium >= 14x)
loads index.m3u8 over HTTP, plays it to the end and shows a rotated phone video upright.
Runs where a `chromium` binary is installed (Debian: apt-get install chromium)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import ClassVar

import pytest

from eventsvc.derive.playlist import generate
from eventsvc.video import ffmpeg as ff
from tests.video.media import FFMPEG, make

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH")

PAGE = """<!doctype html><video id="v" muted playsinline></video><script>
const v = document.getElementById('v'), ev = [];
for (const e of ['loadeddata', 'playing', 'ended', 'error'])
  v.addEventListener(e, () => ev.push(e));
v.src = '%s'; v.play().catch(e => ev.push('playfail ' + e));
setInterval(() => fetch('/report?' + encodeURIComponent(JSON.stringify({
  t: v.currentTime, d: v.duration, w: v.videoWidth, h: v.videoHeight,
  err: v.error && v.error.message, ev}))), 250);
</script>"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    reports: ClassVar[list[dict]] = []  # type: ignore[type-arg]

    def do_GET(self) -> None:
        if self.path.startswith("/report?"):
            _Handler.reports.append(json.loads(urllib.parse.unquote(self.path[8:])))
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


def test_headless_chromium_plays_a_rotated_remuxed_playlist(tmp_path: Path) -> None:
    src = make(tmp_path / "phone.mp4", seconds=3, rotate=90)  # 160x120 stored, shown 120x160
    h = "cd" * 32
    g = asyncio.run(generate(str(src), tmp_path / "web" / "v", h, opts=ff.HlsOptions(),
                             timeout=60, ffmpeg=FFMPEG))  # fmt: skip
    assert g.mode == "remux"
    (tmp_path / "web" / "page.html").write_text(PAGE % f"v/{h[:2]}/{h}/index.m3u8")
    _Handler.reports = []
    handler = functools.partial(_Handler, directory=str(tmp_path / "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/page.html"
    browser = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio",  # type: ignore[list-item]
         "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'prof'}",
         "--remote-debugging-port=0", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(120):
            if _Handler.reports and "ended" in _Handler.reports[-1]["ev"]:
                break
            time.sleep(0.25)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
        server.shutdown()
    assert _Handler.reports, "the page never reported (chromium did not load it)"
    last = _Handler.reports[-1]
    assert last["err"] is None and "error" not in last["ev"], last
    assert "ended" in last["ev"] and abs(last["t"] - 3.0) < 0.3, last
    assert (last["w"], last["h"]) == (120, 160), last  # the display matrix survived
