"""The OpenAPI document tells the truth: schemathesis runs every check against a real
server (uvicorn, real nats-server, a read model built from real events, a real file to
serve, a tiny real CLIP model) with bounded, derandomized examples; ids with a trailing
newline are refused; OPTIONS lists every method; Swagger UI and ReDoc load their
scripts from the package, not a CDN."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from eventsvc.core.events import FileSeen, LibraryOnline
from eventsvc.core.ids import file_id
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library, Settings
from eventsvc.inference.models import ConfiguredClip
from eventsvc.server import EmbeddedNats
from projections.api.docs import STATIC_DIR
from projections.app import create_app

from .conftest import T0, ReadModel, h, hashed, small_events
from .test_people_api import fid, people_events, pid

JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(root: Path) -> list[Any]:
    """The small library set, people and faces, and one real file to serve."""
    photo = root / "real.jpg"
    photo.write_bytes(JPEG)
    st = photo.stat()
    seen = FileSeen(
        library_id="real", file_id=file_id("real", b"real.jpg"), path="real.jpg",
        size=st.st_size, mtime_ns=st.st_mtime_ns, media_kind="image",
    )  # fmt: skip
    online = LibraryOnline(library_id="real", name="Real", root=str(root), occurred_at=T0)
    return [*small_events(), *people_events()[1:], online, seen, hashed(seen, h(99))]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.clip.tiny import make_tiny_clip

    base = tmp_path_factory.mktemp("openapi")
    root = base / "library"
    root.mkdir()
    nats = EmbeddedNats(base / "nats")
    url = nats.start()
    server = None
    thread = None
    try:

        async def stream() -> None:
            log = await EventLog.connect(url)
            await log.ensure_stream()
            await log.close()

        asyncio.run(stream())
        cfg = Settings(
            data_dir=base / "data", nats_url=url, api_token=None,
            clip_model_dir=make_tiny_clip(base / "clip"),
        )  # fmt: skip
        ReadModel(cfg.readmodel_dir).add(*_events(root)).publish()
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(
                    cfg,
                    libraries=[Library(id="real", name="Real", root=root)],
                    clip=ConfiguredClip(cfg),
                ),
                host="127.0.0.1",
                port=port,
                log_level="warning",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(10)
        nats.stop()


@pytest.mark.timeout(360)
def test_every_check_passes(served: str, tmp_path: Path) -> None:
    """``schemathesis run --checks all`` (every phase: examples, coverage, fuzzing,
    stateful), bounded and seeded, writes included (they publish to NATS): 0 failures.

    The command line, not schemathesis' pytest plugin: its lazy loader does not work
    with pytest 9. The hooks module teaches the generator the rules between
    parameters that the document states in words (see tests/api/st_hooks.py).
    """
    report = tmp_path / "junit.xml"
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{served}/schema/openapi.json",
        "--checks", "all", "--max-examples", "20", "--seed", "11", "--workers", "1",
        "--suppress-health-check", "all", "--report", "junit", "--report-junit-path",
        str(report), "--no-color",
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.api.st_hooks",
           "PYTHONPATH": str(Path(__file__).parents[2])}  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert m is not None and int(m.group(1)) > 1000 and m.group(1) == m.group(2), out[-3000:]
    assert re.search(r"(\d+) selected / \1 total", out), out[:2000]


# ------------------------------------------------------------------ plain checks


def test_the_rules_the_hooks_follow_are_enforced(served: str) -> None:
    """What st_hooks teaches the generator is what the server refuses (so the hooks hide
    no mismatch): each rule broken answers 400 naming the parameter."""
    with httpx.Client(base_url=served) as c:
        for path, params, name in [
            ("/photos", {"near": "1,2"}, "radius_km"),
            ("/photos", {"radius_km": 5}, "radius_km"),
            ("/photos", {"taken_from": "2024-01-02", "taken_to": "2024-01-01"}, "taken_to"),
            ("/photos", {"bbox": "10,0,5,1"}, "bbox"),
            ("/photos", {"cursor": "abc"}, "cursor"),
            ("/duplicates", {"max_distance": 3}, "max_distance"),
            ("/photos/search", {"q": "red", "model_version": "nope"}, "model_version"),
        ]:
            r = c.get(path, params=params)
            assert r.status_code == 400 and f"'{name}'" in r.json()["detail"], (params, r.text)


@pytest.mark.parametrize(
    "url",
    [
        f"/photos/{h(1)}%0A",
        f"/photos/{h(1)}%0A/original",
        f"/videos/{h(2)}%0A",
        f"/videos/{h(2)}/index.m3u8%0A",
        f"/people/{pid(1)}%0A",
        f"/faces/{fid(1)}%0A",
        f"/faces?person={pid(1)}%0A",
        f"/faces?content_hash={h(1)}%0A",
        "/photos?bbox=1,2,3,4%0A",
        "/photos?near=1,2%0A&radius_km=1",
        "/photos?taken_from=2024-01-01%0A",
        "/photos?cursor=eyJzIjoicGF0aCJ9%0A",
        f"/videos/{h(2)}/seg_%D9%A1%D9%A2%D9%A3%D9%A4%D9%A5.m4s",  # Arabic-Indic digits
    ],
)
def test_a_trailing_newline_or_foreign_digits_is_refused(served: str, url: str) -> None:
    r = httpx.get(served + url)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"detail"}


def test_writes_take_strict_json(served: str) -> None:
    with httpx.Client(base_url=served) as c:
        for body in ({"hidden": 0}, {"hidden": "true"}, {"name": "x" * 201}, {}, {"x": 1}):
            r = c.patch(f"/people/{pid(1)}", json=body)
            assert r.status_code == 400 and "'body'" in r.json()["detail"], (body, r.text)
        r = c.post(f"/faces/{fid(1)}/reassign", json={"person_id": pid(2), "new_person": 1})
        assert r.status_code == 400, r.text
        r = c.patch(f"/people/{pid(1)}", json={"hidden": False})
        assert r.status_code == 202, r.text


def test_options_lists_every_method(served: str) -> None:
    with httpx.Client(base_url=served) as c:
        for url, methods in [
            (f"/people/{pid(1)}", "GET, OPTIONS, PATCH"),
            ("/duplicates/not-duplicate", "DELETE, OPTIONS, POST"),
            ("/photos", "GET, OPTIONS"),
        ]:
            r = c.options(url)
            assert r.status_code == 204 and r.headers["allow"] == methods, (url, r.headers)
            assert set(c.put(url).headers["allow"].split(", ")) == set(methods.split(", "))


def test_binary_responses_are_documented_as_such(served: str) -> None:
    doc = httpx.get(f"{served}/schema/openapi.json").json()["paths"]
    original = doc["/photos/{content_hash}/original"]["get"]["responses"]
    assert set(original["200"]["content"]) == {"image/*", "video/*", "application/octet-stream"}
    assert set(original["206"]["content"]) == set(original["200"]["content"])
    assert set(doc["/faces/{face_id}/thumbnail"]["get"]["responses"]["200"]["content"]) == {
        "image/jpeg"
    }
    video = doc["/videos/{content_hash}/{name}"]["get"]["responses"]["200"]["content"]
    assert {"application/vnd.apple.mpegurl", "video/iso.segment", "video/mp4"} <= set(video)
    r = httpx.get(f"{served}/photos/{h(99)}/original")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == JPEG


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger", "/schema/redoc"])
def test_doc_pages_load_their_assets_from_the_package(served: str, page: str) -> None:
    with httpx.Client(base_url=served) as c:
        html = c.get(page).text
        assert "https://" not in html and "http://" not in html, html[:2000]
        assets = [part.split("'")[0].split('"')[0] for part in html.split("/static/")[1:]]
        assert assets, html[:2000]
        for asset in assets:
            r = c.get("/static/" + asset)
            assert r.status_code == 200 and len(r.content) > 500, asset
            assert r.content == (STATIC_DIR / asset).read_bytes()


def test_vendored_assets_carry_their_licenses() -> None:
    vendor = STATIC_DIR / "vendor"
    for name in ("swagger-ui", "redoc"):
        assert (vendor / name / "LICENSE").stat().st_size > 500
    assert os.path.getsize(vendor / "redoc" / "redoc.standalone.js") > 500_000


def test_ids_outside_the_api_are_fullmatched_too(tmp_path: Path) -> None:
    from eventsvc.core.errors import ConfigError
    from eventsvc.core.settings import load_libraries
    from eventsvc.media.thumbs import thumb_path

    toml = tmp_path / "libraries.toml"
    toml.write_text('[[library]]\nid = "family\\n"\nroot = "/tmp"\n')
    with pytest.raises(ConfigError, match="library id"):
        load_libraries(libraries_file=toml)
    toml.write_text('[[library]]\nid = "family"\nroot = "/tmp"\n')
    assert [lib.id for lib in load_libraries(libraries_file=toml)[0]] == ["family"]
    with pytest.raises(ValueError):
        thumb_path("/data", "ab" + "0" * 62 + "\n", "small")
    with pytest.raises(ValueError):
        thumb_path("/data", "ab" + "0" * 62, "small\n")
