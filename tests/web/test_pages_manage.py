"""The People, Duplicates and Libraries & pipeline pages without a browser: they render
from a real read model (built by the real projector), behind API tokens they redirect to
/login, a read-only session sees no write action and a write session sees them all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from eventsvc.core.settings import Settings
from projections.app import create_app
from tests.api.conftest import ReadModel, hashed, seen

from .pages import ANNA, Library, build_library, links

WRITE = "w" * 32
READ = "r" * 32
PAGES = ("/web/people", "/web/duplicates", "/web/pipeline")
WRITE_MARKS = ('id="merge"', 'class="secondary hide"', 'class="select"', 'class="rename"',
               'class="secondary split"', 'class="secondary reject"', "not-duplicate")  # fmt: skip


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", nats_url=None, api_token=WRITE,
                    api_read_token=READ)  # fmt: skip


@pytest.fixture
def lib(settings: Settings) -> Library:
    return build_library(ReadModel(settings.readmodel_dir), photos=20)


@pytest.fixture
def client(settings: Settings, lib: Library) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def _login(client: TestClient[Any], token: str) -> None:
    assert client.post("/auth/login", json={"token": token}).status_code == 200


def _all(client: TestClient[Any], lib: Library) -> str:
    texts = []
    for url in (*PAGES, f"/web/people/{lib.person_id}"):
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:500])
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
        texts.append(r.text)
    return "\n".join(texts)


@pytest.mark.parametrize("url", [*PAGES, "/web/people/p-00000000000000aa"])
def test_pages_redirect_to_login_without_a_session(client: TestClient[Any], url: str) -> None:
    r = client.get(url, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fweb%2F")


def test_pages_render_from_the_read_model(client: TestClient[Any], lib: Library) -> None:
    _login(client, WRITE)
    people = client.get("/web/people").text
    doc = links(people)
    assert re.findall(r'<li class="person-card[^"]*" data-person="([^"]+)"', people) == [
        lib.person_id
    ]
    assert doc.by_id[f"name-{lib.person_id}"]["value"] == ANNA
    assert f"/faces/{lib.face_hash}" in people  # the cover crop
    person = client.get(f"/web/people/{lib.person_id}").text
    assert ANNA in person and f'data-hash="{lib.face_hash}"' in person
    dups = client.get("/web/duplicates").text
    a, b = sorted(lib.near)
    assert f'data-a="{a}" data-b="{b}"' in dups and "distance 1" in dups
    assert "No two files hold the same bytes." in dups  # every content has one location
    pipe = client.get("/web/pipeline").text
    assert 'id="libraries"' in pipe and "/web/static/pipeline.js" in pipe
    for url in ("/web/static/people.js", "/web/static/duplicates.js", "/web/static/pipeline.js",
                "/web/static/manage.js", "/web/static/manage.css"):  # fmt: skip
        assert client.get(url).status_code == 200, url


def test_exact_groups_show_an_image_only_where_a_thumbnail_exists(
    settings: Settings, lib: Library
) -> None:
    model = ReadModel(settings.readmodel_dir)
    build_library(model, photos=20)
    for path, h, kind in (("copy/face.jpg", lib.face_hash, "image"),
                          ("copy/holiday.mp4", lib.video_hash, "video")):  # fmt: skip
        fs = seen("alpha", path, size=50_000 if kind == "video" else 1000, kind=kind)
        model.add(fs, hashed(fs, h))
    model.publish()
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        _login(client, READ)
        html = client.get("/web/duplicates").text
    groups = re.findall(
        r'<li class="exact-group" data-hash="([0-9a-f]{64})">(.*?)</li>\n', html, re.S
    )
    by_hash = dict(groups)
    assert set(by_hash) == {lib.face_hash, lib.video_hash}
    assert f"/photos/{lib.face_hash}/thumbnail?size=small" in by_hash[lib.face_hash]
    assert "/thumbnail" not in by_hash[lib.video_hash]  # no broken image: the file name
    assert "holiday.mp4" in by_hash[lib.video_hash]


def test_unknown_and_merged_people(client: TestClient[Any]) -> None:
    _login(client, WRITE)
    assert client.get("/web/people/p-00000000000000ff").status_code == 404
    assert client.get("/web/people/not-an-id").status_code == 400


def test_read_session_sees_no_write_action(client: TestClient[Any], lib: Library) -> None:
    _login(client, READ)
    html = _all(client, lib)
    assert [m for m in WRITE_MARKS if m in html] == []
    assert ANNA in html  # names are still shown


def test_write_session_sees_every_write_action(client: TestClient[Any], lib: Library) -> None:
    _login(client, WRITE)
    html = _all(client, lib)
    assert [m for m in WRITE_MARKS if m not in html] == []
