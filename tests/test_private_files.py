"""The real `eventsvc` process: what it writes is private (data dir 0700, files 0600, as
another OS user unreadable), reasons it serves hold no server path, and an open API is
refused off loopback unless asked for."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventsvc.server import free_port
from projections import readmodel
from tests.harness import b3, cli, make_jpeg, make_video, wait_until
from tests.test_e2e import _stop

NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _json(url: str) -> Any:
    status, text = _get(url)
    assert status == 200, (url, status, text)
    return json.loads(text)


def _as_nobody(*cmd: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*NOBODY, *cmd], capture_output=True, timeout=10)


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory other users may enter (pytest's tmp_path is 0700: it would hide all)."""
    d = Path(tempfile.mkdtemp(prefix="eventsvc-private-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def test_up_writes_private_files_and_serves_no_server_path(base: Path) -> None:
    lib = base / "lib"
    for p in (lib, base):
        p.mkdir(exist_ok=True)
    photos = [make_jpeg(lib / "a.jpg", 1), make_jpeg(lib / "sub" / "b.jpg", 2)]
    video = make_video(lib / "clip.mp4")
    bad = lib / "broken file.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg " * 20)
    control = base / "control.txt"
    control.write_text("readable by all")
    control.chmod(0o644)
    data = base / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # as an older version (or a umask of 022) left it
    (data / "old.txt").write_text("from before")
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = {"EVENTSVC_WORKERS": '["hasher","media","playlist"]', "EVENTSVC_VIDEO_PRESET":
           "ultrafast", "EVENTSVC_LOG_LEVEL": "WARNING"}  # fmt: skip
    proc = cli("up", str(lib), "--data-dir", str(data), "--port", str(port), env=env)
    try:

        def settled() -> bool:
            try:
                video_state = _json(f"{api}/videos/{b3(video)}")["state"]
                failures = _json(f"{api}/pipeline")["failures"]["by_stage"]
                items = _json(f"{api}/photos?limit=50")["items"]
            except (OSError, AssertionError):
                return False
            thumbs = [i for i in items if i["thumbnail"]]
            return video_state == "ready" and failures.get("media") and len(thumbs) >= 2

        await wait_until(settled, 90, 0.5)
        served = [
            _get(f"{api}{url}")[1]
            for url in ("/pipeline", "/libraries", f"/photos/{b3(bad)}",
                        f"/photos/{b3(bad)}/thumbnail", f"/videos/{b3(video)}")
        ]  # fmt: skip
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out

    # The worker's reason names the file as library:relative path, never by its absolute
    # path (and the API redacts any path that still comes through).
    conn = readmodel.open_reader(readmodel.current_path(data / "readmodel"))
    reasons = [r["reason"] for r in conn.execute("SELECT reason FROM failures")]
    conn.close()
    assert any(":broken file.jpg: " in r for r in reasons), reasons
    assert not any(str(base) in r for r in reasons), reasons
    pipeline = json.loads(served[0])
    [failure] = [f for f in pipeline["failures"]["recent"] if f["operation"] == "thumbnail"]
    assert "broken file.jpg" in failure["reason"]
    served[1] = json.loads(served[1])["items"][0]["reason"] or ""  # roots are shown on purpose
    for text in served:
        assert str(base) not in text and os.path.realpath(base) not in text, text

    # Everything under the data dir: 0700 directories, 0600 files, nothing for others.
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    kinds: dict[str, int] = {}
    for root, dirs, files in os.walk(data):
        for name in dirs + files:
            p = Path(root) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode) or p == data / "old.txt":
                continue
            assert stat.S_IMODE(st.st_mode) & 0o077 == 0, f"{p} is {stat.S_IMODE(st.st_mode):o}"
            top = p.relative_to(data).parts[0]
            kinds[top] = kinds.get(top, 0) + 1
    assert {"readmodel", "thumbs", "videos", "nats"} <= set(kinds), kinds
    assert list((data / "videos").glob("*/*/index.m3u8")), "no HLS playlist was made"
    # <hash[:2]>/<hash>-<size>.jpg; a photo no larger than 256 px has one file for both sizes
    assert len(list((data / "thumbs").glob("*/*-small.jpg"))) >= len(photos)

    # As another user: the control file reads, nothing of ours does.
    assert _as_nobody("cat", str(control)).returncode == 0
    database = readmodel.current_path(data / "readmodel")
    for target in (database, data / "old.txt", next((data / "thumbs").rglob("*.jpg"))):
        r = _as_nobody("cat", str(target))
        assert r.returncode != 0 and b"Permission denied" in r.stderr, target
    assert _as_nobody("ls", str(data)).returncode != 0


async def test_open_api_on_all_interfaces_needs_the_flag(base: Path) -> None:
    port = free_port()
    data = base / "data"
    proc = cli("api", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(data))
    out = _stop(proc, sig=0, timeout=60)
    assert proc.returncode != 0, out
    assert "refusing to serve the API on 0.0.0.0 without a token" in out
    assert "--insecure-no-auth" in out
    proc = cli("api", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(data),
               "--insecure-no-auth")  # fmt: skip
    try:

        def up() -> bool:
            try:
                return _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
            except OSError:
                return False

        await wait_until(up, 60, 0.2)
    finally:
        out = _stop(proc)
    assert "has no token" in out  # the loud warning
