"""The web pages render from a real SQLite read model (built by the projector from real
events), through the real app (Litestar test client): timeline, scroll pages, months,
photo view, near duplicates, search without a model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import TestClient

from eventsvc.core.events import NotDuplicate
from eventsvc.core.settings import Settings
from projections.api import create_app
from projections.web.common import CSP
from projections.web.timeline import FIRST_SCREEN, PAGE_SIZE
from tests.api.conftest import ReadModel

from .pages import ANNA, Library, build_library, links, tile_hashes


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    empty = tmp_path / "no-model"
    empty.mkdir()
    # A model directory without a model: search says so at once (never downloads).
    return Settings(data_dir=tmp_path / "data", nats_url=None, api_token=None,
                    clip_model_dir=empty)  # fmt: skip


@pytest.fixture
def model(settings: Settings) -> ReadModel:
    return ReadModel(settings.readmodel_dir)


@pytest.fixture
def lib(model: ReadModel) -> Library:
    return build_library(model)


@pytest.fixture
def client(settings: Settings, lib: Library) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def page(client: TestClient[Any], url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    return r.text


def json_order(client: TestClient[Any], **params: Any) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        q = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        body = client.get("/photos", params=q).json()
        out += [p["content_hash"] for p in body["items"]]
        cursor = body["next"]
        if cursor is None:
            return out


def scroll_all(client: TestClient[Any], url: str) -> tuple[list[str], int]:
    """Every tile of a page and of the fragments its sentinels load, and how many pages."""
    html = page(client, url)
    seen = tile_hashes(html)
    pages = 1
    while True:
        more = [v for t, a, v in links(html).refs if a == "hx-get" and "/page?" in v]
        if not more:
            return seen, pages
        assert len(more) == 1
        html = page(client, more[0])
        seen += tile_hashes(html)
        pages += 1


def test_timeline_first_screen_and_scroll_match_the_api(
    client: TestClient[Any], lib: Library
) -> None:
    html = page(client, "/")
    first = tile_hashes(html)
    assert len(first) == FIRST_SCREEN
    assert ">May 2023</h2>" in html and ">April 2023</h2>" in html  # 130 over 3 months
    assert ">March 2023</h2>" not in html
    everything, pages = scroll_all(client, "/")
    expected = json_order(client, sort="-taken")
    assert everything == expected  # same items, same order, no repeats, none left out
    assert len(everything) == lib.photos + 1
    assert pages == 1 + -(-(lib.photos + 1 - FIRST_SCREEN) // PAGE_SIZE)
    # a month heading appears once, even where a month spans two scroll pages
    second = next(v for _, a, v in links(html).refs if a == "hx-get" and "/page?" in v)
    assert (html + page(client, second)).count(">April 2023</h2>") == 1


@pytest.mark.parametrize("sort", ["taken", "-mtime", "path"])
def test_timeline_sort_orders(client: TestClient[Any], sort: str) -> None:
    everything, _ = scroll_all(client, f"/?sort={sort}")
    assert everything == json_order(client, sort=sort)


def test_timeline_filters(client: TestClient[Any], lib: Library) -> None:
    assert tile_hashes(page(client, "/?media_kind=video")) == [lib.video_hash]
    assert tile_hashes(page(client, f"/?person={ANNA}")) == [lib.face_hash]
    assert tile_hashes(page(client, "/?near=48.85,2.29&radius_km=5")) == [lib.gps_hash]
    both = scroll_all(client, "/?model=EOS+R&taken_from=2023-04-01&taken_to=2023-04-30")[0]
    assert both == json_order(
        client, sort="-taken", model="EOS R", taken_from="2023-04-01", taken_to="2023-04-30"
    )
    assert 0 < len(both) < lib.photos
    html = page(client, "/?library=nowhere")
    assert "Nothing matches these filters." in html
    bad = page(client, "/?taken_from=yesterday", status=400)
    assert "invalid parameter &#39;taken_from&#39;" in bad


def test_months_scrubber_and_jump(client: TestClient[Any], lib: Library) -> None:
    html = page(client, "/web/timeline/months")
    for month, count in lib.months.items():
        assert f'href="/?at={month}"' in html
        assert f': {count}"' in html
    april = tile_hashes(page(client, "/?at=2023-04"))
    expected = json_order(client, sort="-taken", taken_to="2023-04-30")
    assert april == expected[:FIRST_SCREEN]
    assert 'class="scrubber"' not in page(client, "/?sort=path")


def _walk(client: TestClient[Any], url: str, rel: str) -> list[str]:
    walked = []
    while url:
        html = page(client, url)
        walked.append(urlsplit(url).path.rsplit("/", 1)[-1])
        assert parse_qs(urlsplit(url).query)["sort"] == ["taken"]  # the listing is kept
        url = links(html).by_id.get(rel, {}).get("href", "")
    return walked


def test_photo_view_steps_through_the_listing(client: TestClient[Any]) -> None:
    order = json_order(client, sort="taken")
    hrefs = links(page(client, "/?sort=taken")).values("a", "href")
    first = next(u for u in hrefs if u.startswith(f"/photo/{order[0]}?"))
    assert _walk(client, first, "next") == order
    last_page = scroll_all(client, "/?sort=taken")
    assert last_page[0] == order
    # the last item's link, as its scroll page has it, then back to the first
    html = page(client, "/?sort=taken")
    while more := [v for _, a, v in links(html).refs if a == "hx-get" and "/page?" in v]:
        html = page(client, more[0])
    last = next(u for u in links(html).values("a", "href") if u.startswith(f"/photo/{order[-1]}?"))
    assert _walk(client, last, "prev") == order[::-1]


def test_photo_view_info_faces_and_osm_link(client: TestClient[Any], lib: Library) -> None:
    html = page(client, f"/photo/{lib.gps_hash}")
    assert "Canon EOS 5D" in html
    assert "48.858400, 2.294500" in html
    osm = [v for v in links(html).values("a", "href") if "openstreetmap" in v]
    assert osm == [
        "https://www.openstreetmap.org/?mlat=48.858400&mlon=2.294500#map=16/48.858400/2.294500"
    ]
    assert "EXIF DateTimeOriginal" in html
    assert "pics/img0007.jpg" in html and "Alpha" in html
    faces = page(client, f"/photo/{lib.face_hash}")
    assert len(re.findall(r'class="face( unnamed)?"', faces)) == 2  # one named, one not
    assert f'data-name="{ANNA}"' in faces and 'data-box="0.3,0.1,0.5,0.4"' in faces
    assert 'id="face-editor"' in faces  # the open API may write


def test_photo_view_video_plays_from_our_hls(client: TestClient[Any], lib: Library) -> None:
    html = page(client, f"/photo/{lib.video_hash}")
    player = links(html).by_id["player"]
    assert player["data-hls"] == f"/videos/{lib.video_hash}/index.m3u8"
    assert player["poster"] == f"/videos/{lib.video_hash}/poster.jpg"
    assert "/web/static/vendor/hls.js/hls.light.min.js" in links(html).values("script", "src")


def test_near_duplicates_and_not_a_duplicate(
    client: TestClient[Any], lib: Library, model: ReadModel
) -> None:
    a, b = lib.near
    html = page(client, f"/web/photo/{a}/near")
    assert re.findall(r'href="/photo/([0-9a-f]{64})"', html) == [b]
    model.add(NotDuplicate(a=min(a, b), b=max(a, b))).publish()
    assert "None within Hamming distance" in page(client, f"/web/photo/{a}/near")


def test_search_without_a_model_says_how_to_install_one(client: TestClient[Any]) -> None:
    html = page(client, "/search?q=a+dog")
    assert 'id="no-model"' in html
    assert "pip install &#34;eventsvc[clip]&#34;" in html
    assert "EVENTSVC_CLIP_MODEL_DIR" in html
    listed = page(client, "/search?media_kind=video")  # filters alone still work
    assert len(tile_hashes(listed)) == 1


def test_unknown_photo_is_404(client: TestClient[Any]) -> None:
    assert client.get(f"/photo/{'f' * 64}").status_code == 404
    assert client.get("/photo/nothex").status_code == 400


def test_open_api_keeps_the_loopback_host_guard(client: TestClient[Any]) -> None:
    r = client.get("/", headers={"Host": "evil.example:8470"})
    assert r.status_code == 403
