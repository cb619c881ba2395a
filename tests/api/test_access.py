"""API access: scoped tokens on every route, browser sessions, cross-site writes refused,
the bind rule, and no server path in what is served."""

from __future__ import annotations

import io
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient
from PIL import Image

from eventsvc.core.errors import ConfigError
from eventsvc.core.events import DerivationFailed, LibraryOnline, LibraryStale, ThumbnailReady
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings
from projections.api.redact import redactor_for
from projections.api.session import COOKIE
from projections.app import create_app

from .conftest import B_IMG1, ReadModel, h, hashed, seen, small_events

WRITE = secrets.token_hex(16)
READ = secrets.token_hex(16)
FILE_WRITE = secrets.token_hex(16)
FILE_READ = secrets.token_hex(16)
SAFE = {"GET", "HEAD", "OPTIONS"}
LOCAL = "http://127.0.0.1"

# A valid-shaped value for every path parameter the app declares.
DUMMY = {
    "content_hash": h(1),
    "person_id": "p-0123456789abcdef",
    "face_id": f"{h(1)}-abcdef-0",
    "name": "index.m3u8",
    "path": "nothing-here",
    "file_path": "vendor/README.md",
    "tag": "beach",
    "library_id": "alpha",
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def routes(app: Litestar) -> list[tuple[str, str, bool]]:
    """(method, concrete path, public) of every route handler the app has."""
    out = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        missing = set(route.path_parameters) - set(DUMMY)
        assert not missing, f"no dummy value for {missing} of {route.path}"
        path = route.path_format.format(**DUMMY)
        for handler in route.route_handlers:
            for method in handler.http_methods:
                if method != "OPTIONS":
                    out.append((method, path, bool(handler.opt.get("public"))))
    return sorted(out)


def call(c: TestClient[Any], method: str, path: str, **kw: Any) -> Any:
    if method not in SAFE:
        kw.setdefault("json", {"token": "x" * 20} if path == "/auth/login" else {})
    return c.request(method, path, **kw)


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    f = tmp_path / "tokens"
    f.write_text(f"# scope token name\nwrite {FILE_WRITE} admin\n\nread  {FILE_READ}  # tv\n")
    f.chmod(0o600)
    return f


@pytest.fixture
def guarded(small: ReadModel, settings: Settings, tokens_file: Path) -> Iterator[TestClient[Any]]:
    s = settings.model_copy(
        update={"api_token": WRITE, "api_read_token": READ, "api_tokens_file": tokens_file}
    )
    with TestClient(create_app(s)) as c:
        yield c


def test_every_route_needs_its_scope(guarded: TestClient[Any]) -> None:
    found = routes(guarded.app)
    methods = {m for m, _, _ in found}
    assert {"GET", "POST", "PATCH", "DELETE"} <= methods  # the enumeration sees the writes
    assert ("GET", "/healthz", True) in found
    for method, path, public in found:
        what = f"{method} {path}"
        if public:
            continue
        r = call(guarded, method, path)
        assert r.status_code == 401, what
        assert r.headers["www-authenticate"] == "Bearer", what
        assert set(r.json()) == {"detail"}, what
        r = call(guarded, method, path, headers=bearer("wrong-" + WRITE))
        assert r.status_code == 401 and r.json() == {"detail": "invalid bearer token"}, what
        assert call(guarded, method, path, headers={"Authorization": WRITE}).status_code == 401
        for token in (READ, FILE_READ):
            r = call(guarded, method, path, headers=bearer(token))
            if method in SAFE:
                assert r.status_code not in (401, 403), (what, r.text)
            else:
                assert r.status_code == 403, (what, r.text)
                assert "write" in r.json()["detail"]
        for token in (WRITE, FILE_WRITE):
            r = call(guarded, method, path, headers=bearer(token))
            assert r.status_code not in (401, 403), (what, r.text)
    assert guarded.get("/healthz").status_code == 200


def test_auth_me_names_the_scope(guarded: TestClient[Any]) -> None:
    assert guarded.get("/auth/me", headers=bearer(FILE_READ)).json() == {
        "scope": "read", "via": "bearer", "name": "tokens:4", "expires_at": None,
    }  # fmt: skip
    me = guarded.get("/auth/me", headers=bearer(FILE_WRITE)).json()
    assert (me["scope"], me["name"]) == ("write", "admin")
    me = guarded.get("/auth/me", headers=bearer(WRITE)).json()
    assert (me["scope"], me["name"]) == ("write", "api_token")


def _thumb(settings: Settings, model: ReadModel) -> str:
    rel = f"{h(1)[:2]}/{h(1)}/small.jpg"
    target = settings.thumbs_dir / rel
    target.parent.mkdir(parents=True)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "JPEG")
    target.write_bytes(buf.getvalue())
    model.add(ThumbnailReady(content_hash=h(1), sizes={"small": rel}, width=8, height=8))
    model.publish()
    return f"/photos/{h(1)}/thumbnail"


def test_login_cookie_serves_media_and_logout_ends_it(
    guarded: TestClient[Any], settings: Settings, small: ReadModel
) -> None:
    url = _thumb(settings, small)
    assert guarded.get(url).status_code == 401
    r = guarded.post("/auth/login", json={"token": "nope" * 8})
    assert r.status_code == 401 and COOKIE not in r.headers.get("set-cookie", "")
    r = guarded.post("/auth/login", json={"token": FILE_WRITE})
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "write" and r.json()["via"] == "cookie"
    cookie = r.headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower(): a for a in cookie.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= set(attrs), cookie
    assert attrs["samesite"].split("=")[1].lower() == "strict"
    assert attrs["path"].split("=")[1] == "/"
    assert "secure" not in attrs  # plain http here; https requests get Secure
    sid = guarded.cookies[COOKIE]
    got = guarded.get(url)  # the client sends the cookie, as an <img> would
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert guarded.get("/auth/me").json()["via"] == "cookie"
    # A write by cookie from this API's own page (same origin) passes the guard.
    r = guarded.post(
        "/faces/" + DUMMY["face_id"] + "/reject", headers={"Origin": "http://testserver.local"}
    )
    assert r.status_code not in (401, 403, 415), r.text
    assert guarded.post("/auth/logout").status_code == 200
    assert guarded.get(url).status_code == 401
    # The old session id is dead on the server, not only forgotten by this client.
    guarded.cookies.set(COOKIE, sid)
    r = guarded.get(url)
    assert r.status_code == 401 and "log in again" in r.json()["detail"]
    guarded.cookies.clear()
    guarded.cookies.set(COOKIE, "forged")
    assert guarded.get(url).status_code == 401


def test_a_read_session_cannot_write(guarded: TestClient[Any]) -> None:
    assert guarded.post("/auth/login", json={"token": READ}).status_code == 200
    assert guarded.get("/photos").status_code == 200
    r = guarded.post("/duplicates/not-duplicate", json={"a": h(1), "b": h(2)})
    assert r.status_code == 403 and "'read'" in r.json()["detail"]
    assert guarded.patch("/people/p-0123456789abcdef", json={"name": "x"}).status_code == 403


def test_secure_cookie_over_https(small: ReadModel, settings: Settings) -> None:
    s = settings.model_copy(update={"api_token": WRITE})
    with TestClient(create_app(s), base_url="https://photos.example") as c:
        r = c.post("/auth/login", json={"token": WRITE})
        assert r.status_code == 200
        assert "secure" in r.headers["set-cookie"].lower()
    s = settings.model_copy(update={"api_token": WRITE, "api_cookie_secure": True})
    with TestClient(create_app(s)) as c:
        r = c.post("/auth/login", json={"token": WRITE})
        assert "secure" in r.headers["set-cookie"].lower()


def test_login_without_tokens_opens_nothing(client: TestClient[Any]) -> None:
    r = client.post("/auth/login", json={"token": WRITE})
    assert r.status_code == 200 and r.json()["via"] == "open"
    assert "set-cookie" not in r.headers
    assert client.get("/auth/me").json() == {
        "scope": "write", "via": "open", "name": None, "expires_at": None,
    }  # fmt: skip


# ------------------------------------------------------------------ cross-site writes


async def test_cross_origin_text_plain_post_is_refused(
    small: ReadModel, settings: Settings, nats_url: str
) -> None:
    log = await EventLog.connect(nats_url)
    try:
        await log.ensure_stream()
        first = await log.last_seq() + 1
        s = settings.model_copy(update={"nats_url": nats_url})  # no token: the default
        body = f'{{"a": "{h(1)}", "b": "{h(2)}"}}'
        url = "/duplicates/not-duplicate"
        with TestClient(create_app(s), base_url=LOCAL) as c:
            # What a foreign page's <form enctype="text/plain"> or no-cors fetch sends.
            for headers, status in (
                ({"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403),
                ({"Origin": "null", "Content-Type": "text/plain"}, 403),
                ({"Content-Type": "text/plain"}, 415),  # an old browser without Origin
                ({"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, 403),
                ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
                ({"Origin": "http://evil.example", "Content-Type": "application/json"}, 403),
                ({"Origin": "http://127.0.0.1:8080", "Content-Type": "text/plain"}, 403),
            ):
                r = c.post(url, content=body, headers=headers)
                assert r.status_code == status, (headers, r.text)
                assert set(r.json()) == {"detail"}
            # A body-less write from a foreign page: the Origin check alone refuses it.
            r = c.post(f"/faces/{DUMMY['face_id']}/reject", headers={"Origin": "https://x.example"})
            assert r.status_code == 403
            assert await log.last_seq() == first - 1, "a refused write reached the log"
            # The API's own page (same origin), and a script (no Origin), may write JSON.
            r = c.post(url, content=body, headers={"Origin": LOCAL,
                                                   "Content-Type": "application/json"})  # fmt: skip
            assert r.status_code == 202, r.text
            r = c.post(url, json={"a": h(1), "b": h(3)}, headers={"Sec-Fetch-Site": "same-origin"})
            assert r.status_code == 202, r.text
        events = [raw async for batch in log.read(start_seq=first) for raw in batch]
        assert [e.subject.rsplit(".", 1)[-1] for e in events] == ["NotDuplicate"] * 2
    finally:
        await log.close()


def test_an_open_api_answers_loopback_names_only(small: ReadModel, settings: Settings) -> None:
    """DNS rebinding: evil.example re-bound to 127.0.0.1 is same-origin to its own page."""
    with TestClient(create_app(settings), base_url="http://evil.example:8470") as c:
        r = c.get("/photos")
        assert r.status_code == 403 and "loopback names only" in r.json()["detail"]
        r = c.post("/duplicates/not-duplicate", json={"a": h(1), "b": h(2)},
                   headers={"Origin": "http://evil.example:8470"})  # fmt: skip
        assert r.status_code == 403
    with TestClient(create_app(settings), base_url=LOCAL) as c:
        for host in ("localhost:8470", "127.0.0.1", "127.0.0.9:80", "[::1]:8470", "[::1]",
                     "app.localhost"):  # fmt: skip
            assert c.get("/photos", headers={"Host": host}).status_code == 200, host
        for host in ("localhost.evil.example", "127.0.0.1.nip.io", "[::2]", ""):
            assert c.get("/photos", headers={"Host": host}).status_code == 403, host
    # With a token a name is no way in: any Host is served (behind a proxy, say).
    s = settings.model_copy(update={"api_read_token": READ})
    with TestClient(create_app(s), base_url="http://photos.example") as c:
        assert c.get("/photos", headers=bearer(READ)).status_code == 200
    # Opened on purpose (--insecure-no-auth off loopback): names are not checked either.
    s = settings.model_copy(update={"api_host": "0.0.0.0", "api_allow_unauthenticated": True})
    with TestClient(create_app(s), base_url="http://nas.lan:8470") as c:
        assert c.get("/photos").status_code == 200


def test_allowed_origins_may_write(small: ReadModel, settings: Settings) -> None:
    s = settings.model_copy(update={"api_allowed_origins": ["https://photos.example"]})
    with TestClient(create_app(s), base_url=LOCAL) as c:
        for origin, status in (("https://photos.example", 404), ("https://photos.example:443", 404),
                               ("http://photos.example", 403)):  # fmt: skip
            r = c.post(f"/faces/{DUMMY['face_id']}/reject", headers={"Origin": origin})
            assert r.status_code == status, (origin, r.text)


# ------------------------------------------------------------------ tokens, bind rule


def test_tokens_file_is_checked(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "t"

    def app_with(text: str, mode: int = 0o600) -> None:
        f.write_text(text)
        f.chmod(mode)
        create_app(settings.model_copy(update={"api_tokens_file": f}))

    app_with(f"read {READ}\n")
    for text, why in (
        (f"admin {WRITE}\n", "unknown scope"),
        ("write short\n", "shorter than 16"),
        (f"write {WRITE} a b\n", "expected 'SCOPE TOKEN [NAME]'"),
        (f"write {WRITE} a\nread {WRITE} b\n", "the same token"),
        (f"write {WRITE} a\nread {READ} a\n", "unique"),
    ):
        with pytest.raises(ConfigError, match=re.escape(why)):
            app_with(text)
    with pytest.raises(ConfigError, match="chmod 600"):
        app_with(f"read {READ}\n", 0o644)
    with pytest.raises(ConfigError, match="cannot read"):
        create_app(settings.model_copy(update={"api_tokens_file": tmp_path / "absent"}))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "photos.lan"])
def test_open_api_off_loopback_needs_the_flag(settings: Settings, host: str) -> None:
    s = settings.model_copy(update={"api_host": host})
    with pytest.raises(ConfigError, match="--insecure-no-auth"):
        create_app(s)
    create_app(s.model_copy(update={"api_allow_unauthenticated": True}))
    create_app(s.model_copy(update={"api_read_token": READ}))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_open_api_on_loopback_is_fine(settings: Settings, host: str) -> None:
    create_app(settings.model_copy(update={"api_host": host}))


# ------------------------------------------------------------------ no server paths


def test_served_reasons_hold_no_absolute_path(
    model: ReadModel, settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "Pictures"
    data = settings.data_dir.absolute()
    model.add(*small_events())
    model.add(
        LibraryOnline(library_id="alpha", name="Alpha", root=str(root)),
        LibraryStale(library_id="gamma", name="G", root=str(root / "g"),
                     reason=f"root {root / 'g'} is not a directory"),
        bad := seen("alpha", "2023/bad.jpg"),
        hashed(bad, h(5)),
        DerivationFailed(stage="media", operation="thumbnail",
                         reason=f"cannot identify image file "
                         f"'{root}/2023/bad.jpg'", content_hash=h(5), library_id="alpha",
                         input_subject="photos.content.w.HashComputed"),
        DerivationFailed(stage="media", operation="thumbnail",
                         reason=f"cannot identify image file "
                         f"'{root}/2023/a b.jpg'", content_hash=h(3), library_id="alpha",
                         input_subject="photos.content.x.HashComputed"),
        DerivationFailed(stage="playlist", reason=f"cannot create {data}/videos/ab/.tmp-x: "
                         "[Errno 28] No space left", content_hash=h(2),
                         input_subject="photos.content.y.HashComputed"),
        DerivationFailed(stage="hasher", reason="[Errno 13] Permission denied: '/etc/shadow'",
                         file_id=B_IMG1.file_id, input_subject="photos.file.z.FileSeen"),
    )  # fmt: skip
    model.publish()
    with TestClient(create_app(settings, extra_status=lambda: {"projector": {
            "path": str(data / "readmodel" / "gen-1")}}), base_url=LOCAL) as c:  # fmt: skip
        served = {
            url: c.get(url).text
            for url in ("/pipeline", "/libraries", f"/photos/{h(5)}", f"/videos/{h(2)}",
                        f"/videos/{h(2)}/index.m3u8", f"/photos/{h(3)}/thumbnail")
        }  # fmt: skip
    # /libraries shows each configured root on purpose; nothing else may.
    served["/libraries"] = re.sub(r'"root":"[^"]*"', '"root":""', served["/libraries"])
    everything = "\n".join(served.values())
    for secret in (str(tmp_path), "/etc/shadow", os.path.realpath(tmp_path)):
        assert secret not in everything, [(u, t) for u, t in served.items() if secret in t]
    # Still useful: the library-relative path, the data-relative path, the last name.
    assert "alpha:2023/a b.jpg" in served["/pipeline"]
    assert "<data>/videos/ab/.tmp-x" in served[f"/videos/{h(2)}"]
    assert "<data>/readmodel/gen-1" in served["/pipeline"]
    assert "…/shadow" in served["/pipeline"]
    assert "alpha:2023/bad.jpg" in served[f"/photos/{h(5)}"]
    assert "gamma: is not a directory" in served["/libraries"]
    assert (
        "alpha:2023/a b.jpg" in served[f"/photos/{h(3)}/thumbnail"]
        or "a b.jpg" in (served[f"/photos/{h(3)}/thumbnail"])
    )


def test_login_page_is_public_html(guarded: TestClient[Any]) -> None:
    r = guarded.get("/auth/login")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'fetch("/auth/login"' in r.text and "application/json" in r.text
    assert r.headers["x-frame-options"] == "DENY"


def test_redactor_keeps_what_is_not_a_server_path(settings: Settings) -> None:
    redact = redactor_for(settings, roots=[("alpha", "/mnt/alpha")])
    data = settings.data_dir.absolute()
    for raw, want in (
        ("root /mnt/alpha does not exist", "root alpha: does not exist"),
        ("cannot open '/mnt/alpha/x y/z.jpg'", "cannot open 'alpha:x y/z.jpg'"),
        ("/mnt/alphabet/z.jpg: bad", "…/z.jpg: bad"),
        (f"{data}/thumbs/ab/c.jpg missing", "<data>/thumbs/ab/c.jpg missing"),
        (f"{data} is full", "<data> is full"),
        ('No such file: "/etc/passwd"', 'No such file: "…/passwd"'),
        ("ffmpeg /usr/bin/ffmpeg -i /root/v.mp4", "ffmpeg …/ffmpeg -i …/v.mp4"),
        ("nats://127.0.0.1:4222/x and 2023/a.jpg", "nats://127.0.0.1:4222/x and 2023/a.jpg"),
        ("log in: POST /auth/login; see /videos/h/index.m3u8", None),
        ("photos.content.abc.HashComputed", None),
    ):
        assert redact(raw) == (want or raw), raw
    assert redact.tree({"a": ["/etc/x", 1, None], "b": "/etc/y"}) == {
        "a": ["…/x", 1, None], "b": "…/y",
    }  # fmt: skip
