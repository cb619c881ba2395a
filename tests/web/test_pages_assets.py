"""Nothing is fetched from another host: every URL in a page or an asset is this app's own
(the OpenStreetMap *link* of the photo view is a link, never loaded), every asset a page
names is served, and the wheel's package data covers every template and static file."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from eventsvc.core.settings import Settings
from projections.api import create_app
from projections.web import STATIC_DIR, STATIC_PATH, TEMPLATES_DIR
from tests.api.conftest import ReadModel

from .pages import Library, build_library, links

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"""https?://[^\s"'`)<>\\]*""", re.I)
"""An absolute URL (pages also must not use protocol-relative ones: checked per attribute)."""
NOT_FETCHED = {
    "http://www.w3.org/2000/svg": "the SVG XML namespace (icon.svg, htmx)",
    "https://aomedia.org/emsg/ID3": "an ID3 scheme id that hls.js compares, never loads",
}
OSM = "https://www.openstreetmap.org/"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    empty = tmp_path / "no-model"
    empty.mkdir()
    return Settings(data_dir=tmp_path / "data", nats_url=None, api_token=None,
                    clip_model_dir=empty)  # fmt: skip


@pytest.fixture
def lib(settings: Settings) -> Library:
    return build_library(ReadModel(settings.readmodel_dir), photos=70)


@pytest.fixture
def client(settings: Settings, lib: Library) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def _pages(client: TestClient[Any], lib: Library) -> dict[str, str]:
    urls = [
        "/", "/?sort=path", "/web/timeline/months", "/search", "/search?q=a+dog",
        "/search?media_kind=image", f"/photo/{lib.gps_hash}", f"/photo/{lib.face_hash}",
        f"/photo/{lib.video_hash}", f"/web/photo/{lib.near[0]}/near",
    ]  # fmt: skip
    out = {}
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:300])
        out[url] = r.text
    html = out["/"]
    more = [v for _, a, v in links(html).refs if a == "hx-get" and "/page?" in v]
    out[more[0]] = client.get(more[0]).text
    return out


def test_pages_name_only_this_apps_urls(client: TestClient[Any], lib: Library) -> None:
    osm_links = 0
    for url, html in _pages(client, lib).items():
        for tag, attr, value in links(html).refs:
            if value.startswith(OSM):
                assert (tag, attr) == ("a", "href"), (url, tag, attr)  # a link, never a load
                osm_links += 1
                continue
            if value.startswith("#"):
                continue  # a fragment of the page itself
            assert value.startswith("/") and not value.startswith("//"), (url, tag, attr, value)
        foreign = [u for u in URL.findall(html) if not u.startswith(OSM)]
        assert foreign == [], url
    assert osm_links == 1  # the GPS photo's


def test_every_named_asset_is_served(client: TestClient[Any], lib: Library) -> None:
    named = set()
    for html in _pages(client, lib).values():
        named |= {v for t, a, v in links(html).refs if v.startswith(STATIC_PATH)}
    assert f"{STATIC_PATH}/vendor/htmx/htmx.min.js" in named
    assert f"{STATIC_PATH}/vendor/hls.js/hls.light.min.js" in named
    for path in sorted(named):
        r = client.get(path)
        assert r.status_code == 200, path
        assert len(r.content) > 0


def _assets() -> list[Path]:
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    files += [p for p in TEMPLATES_DIR.rglob("*") if p.is_file()]
    return files


def test_assets_fetch_nothing_from_other_hosts(client: TestClient[Any]) -> None:
    checked = 0
    for path in _assets():
        if path.suffix not in (".js", ".css", ".html", ".svg"):
            continue
        text = path.read_text(encoding="utf-8")
        for url in URL.findall(text):
            if path.parent == TEMPLATES_DIR and url.startswith(OSM):
                continue  # the photo view's OpenStreetMap link
            assert url in NOT_FETCHED, (path, url)
        for ref in re.findall(r"url\(([^)]*)\)", text) if path.suffix == ".css" else []:
            assert not URL.search(ref) and not ref.strip("'\" ").startswith("//"), (path, ref)
        if path.is_relative_to(STATIC_DIR):
            rel = path.relative_to(STATIC_DIR).as_posix()
            assert client.get(f"{STATIC_PATH}/{rel}").status_code == 200, rel
        checked += 1
    assert checked >= 8


def test_vendored_libraries_carry_their_licences() -> None:
    for name, lib in (("htmx", "htmx.min.js"), ("hls.js", "hls.light.min.js")):
        d = STATIC_DIR / "vendor" / name
        assert (d / lib).stat().st_size > 10_000
        assert (d / "LICENSE").read_text().strip()
    assert "sourceMappingURL" not in (STATIC_DIR / "vendor/hls.js/hls.light.min.js").read_text()


def test_package_data_ships_every_template_and_asset() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = conf["tool"]["setuptools"]["package-data"]["projections"]
    base = ROOT / "projections"
    for path in _assets():
        rel = path.relative_to(base).as_posix()
        # setuptools globs: '*' does not cross '/'
        assert any(
            fnmatch.fnmatchcase(rel, pat) and rel.count("/") == pat.count("/") for pat in patterns
        ), rel
