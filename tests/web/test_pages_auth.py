"""Pages behind API tokens: a redirect to /login without a session, the session cookie of
POST /auth/login opens them, a read-only session sees no write action."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from litestar.testing import TestClient

from eventsvc.core.settings import Settings
from projections.api import create_app
from tests.api.conftest import ReadModel

from .pages import Library, build_library, links

WRITE = "w" * 32
READ = "r" * 32


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


def login(client: TestClient[Any], token: str) -> None:
    r = client.post("/auth/login", json={"token": token})
    assert r.status_code == 200, r.text
    assert client.cookies.get("eventsvc_session")


@pytest.mark.parametrize(
    "url", ["/", "/search?q=x", "/?media_kind=video&sort=taken", "/web/timeline/months"]
)
def test_pages_redirect_to_login_without_a_session(client: TestClient[Any], url: str) -> None:
    r = client.get(url, follow_redirects=False)
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith("/login?next=")
    assert unquote(location.removeprefix("/login?next=")) == url
    # the JSON API still answers 401 JSON, not a redirect
    assert client.get("/photos").status_code == 401


def test_a_scroll_fragment_sends_the_whole_page_to_login(client: TestClient[Any]) -> None:
    r = client.get(
        "/web/timeline/page?cursor=abc",
        headers={"HX-Request": "true", "HX-Current-URL": "http://127.0.0.1/?sort=taken"},
        follow_redirects=False,
    )
    assert r.status_code == 200 and r.text == ""
    assert r.headers["hx-redirect"] == "/login?next=%2F%3Fsort%3Dtaken"


def test_photo_page_redirects_too(client: TestClient[Any], lib: Library) -> None:
    r = client.get(f"/photo/{lib.face_hash}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fphoto%2F")


def test_login_page_and_static_files_need_no_session(client: TestClient[Any]) -> None:
    r = client.get("/login?next=/search")
    assert r.status_code == 200
    form = links(r.text).by_id["login-form"]
    assert form["data-next"] == "/search"
    assert links(client.get("/login?next=//evil.example/x").text).by_id["login-form"][
        "data-next"
    ] == "/"  # fmt: skip
    assert client.get("/web/static/app.js").status_code == 200
    assert "Log in" in r.text and 'id="logout"' not in r.text


def test_a_stale_cookie_redirects_to_login(client: TestClient[Any]) -> None:
    client.cookies.set("eventsvc_session", "not-a-session")
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303


def test_read_session_browses_without_write_actions(client: TestClient[Any], lib: Library) -> None:
    login(client, READ)
    home = client.get("/")
    assert home.status_code == 200
    assert 'data-can-write="false"' in home.text
    assert "(read only)" in home.text and 'id="logout"' in home.text
    photo = client.get(f"/photo/{lib.face_hash}").text
    assert 'id="face-editor"' not in photo  # no naming, splitting or rejecting
    assert 'class="face' in photo  # the boxes and names are still shown
    # and the API refuses writes of this session anyway
    r = client.post("/faces/x/reject", headers={"Origin": "http://127.0.0.1"})
    assert r.status_code == 403


def test_write_session_gets_write_actions(client: TestClient[Any], lib: Library) -> None:
    login(client, WRITE)
    home = client.get("/")
    assert 'data-can-write="true"' in home.text and "(read/write)" in home.text
    assert 'id="face-editor"' in client.get(f"/photo/{lib.face_hash}").text


def test_logged_in_login_page_goes_on(client: TestClient[Any]) -> None:
    login(client, READ)
    r = client.get("/login?next=/search")
    assert r.status_code == 200  # still a form: a user may switch tokens


def test_bearer_token_reads_pages_too(client: TestClient[Any]) -> None:
    r = client.get("/", headers={"Authorization": f"Bearer {READ}"})
    assert r.status_code == 200 and 'data-can-write="false"' in r.text
