"""Only configured library roots are ever read: the file-access helper, the scanner's walk,
the workers and the API, against every kind of escaping symlink and forged events.

Real files, a real nats-server, the real workers and projector; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from eventsvc.core.errors import LibraryNotConfigured, PermanentError, UnsafePath
from eventsvc.core.events import FileSeen, HashComputed, LibraryOnline
from eventsvc.core.ids import file_id
from eventsvc.core.log import EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.safe_open import fd_path, open_dir_in_root, open_in_root, opened_in_root
from eventsvc.core.settings import Library, Settings
from eventsvc.scanner.walk import Excludes, walk
from projections.app import create_app
from tests.harness import Pipeline, b3, make_jpeg, running, wait_until

# ------------------------------------------------------------------ fixtures


@contextlib.asynccontextmanager
async def serve_here(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app on this event loop (it shares the test's NATS connection)."""
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A root-only secret: mode 0600 in a 0700 directory, outside every library."""
    d = tmp_path / "outside"
    make_jpeg(d / "secret.jpg", seed=99, size=(80, 80))
    (d / "secret.jpg").chmod(0o600)
    d.chmod(0o700)
    return d


def hostile_library(root: Path, outside: Path) -> Path:
    """Every kind of escaping symlink, plus links that stay inside (and so are indexed)."""
    make_jpeg(root / "real.jpg", seed=1)
    make_jpeg(root / "sub" / "inner.jpg", seed=2)
    os.symlink(outside / "secret.jpg", root / "x.jpg")  # a file link out (absolute)
    os.symlink("../outside/secret.jpg", root / "rel.jpg")  # a file link out (relative)
    os.symlink("..", root / "up")  # a directory link to the parent
    os.symlink("/", root / "all")  # a directory link to /
    os.symlink("c2.jpg", root / "c1.jpg")  # a chain: c1 -> c2 -> c3 -> outside
    os.symlink("c3", root / "c2.jpg")
    os.symlink(str(outside / "secret.jpg"), root / "c3")
    os.symlink("la.jpg", root / "lb.jpg")  # a link loop
    os.symlink("lb.jpg", root / "la.jpg")
    os.symlink(".", root / "loop")  # a directory loop
    os.symlink("sub/inner.jpg", root / "alias.jpg")  # inside: indexed by default
    os.symlink("sub", root / "albums")  # inside: indexed by default
    return root


INSIDE_FOLLOWED = {"real.jpg", "sub/inner.jpg", "alias.jpg", "albums/inner.jpg"}
INSIDE_PLAIN = {"real.jpg", "sub/inner.jpg"}


# ------------------------------------------------------------------ the helper


def test_regular_file_inside_is_opened_and_escapes_are_refused(
    tmp_path: Path, outside: Path
) -> None:
    root = hostile_library(tmp_path / "lib", outside)
    secret = str(outside / "secret.jpg")
    with opened_in_root(root, b"real.jpg", library_id="lib") as fd:
        assert os.read(fd, 1 << 20) == (root / "real.jpg").read_bytes()
        assert os.get_blocking(fd)
        assert Path(os.readlink(fd_path(fd))) == root / "real.jpg"
    for rel in (b"alias.jpg", b"albums/inner.jpg", b"sub/../real.jpg", b"loop/albums/inner.jpg"):
        os.close(open_in_root(root, rel, library_id="lib"))
    # An absolute link into the root itself (either spelling of the root) is inside.
    os.symlink(root / "real.jpg", root / "abs.jpg")
    os.close(open_in_root(root, b"abs.jpg", library_id="lib"))
    cases = {
        b"x.jpg": "escape", b"rel.jpg": "escape", b"up/outside/secret.jpg": "escape",
        b"all" + secret.encode(): "escape", b"c1.jpg": "escape", b"../outside/secret.jpg": "escape",
        b"la.jpg": "loop", secret.encode(): "absolute", b"loop/loop/x.jpg": "escape",
    }  # fmt: skip
    for rel, kind in cases.items():
        with pytest.raises(UnsafePath) as info:
            open_in_root(root, rel, library_id="lib")
        assert info.value.kind == kind, rel
        msg = str(info.value)
        assert msg.startswith(f"lib:{rel.decode()}: ") and "refused" in msg
        if not rel.startswith(b"/") and b"all" not in rel:
            assert str(outside) not in msg  # never where a link pointed
    with pytest.raises(FileNotFoundError, match=r"lib:nope\.jpg"):
        open_in_root(root, b"nope.jpg", library_id="lib")
    with pytest.raises(UnsafePath, match="not a regular file"):
        open_in_root(root, b"sub", library_id="lib")


def test_follow_symlinks_off_refuses_every_link(tmp_path: Path, outside: Path) -> None:
    root = hostile_library(tmp_path / "lib", outside)
    os.close(open_in_root(root, b"sub/inner.jpg", follow_symlinks=False))
    for rel in (b"alias.jpg", b"albums/inner.jpg", b"x.jpg"):
        with pytest.raises(UnsafePath) as info:
            open_in_root(root, rel, library_id="lib", follow_symlinks=False)
        assert info.value.kind == "symlink"
        assert "following symlinks is disabled" in str(info.value)


def test_fifo_and_device_are_refused_without_blocking(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    os.mkfifo(root / "pipe.jpg")  # nobody writes: an open for reading would block forever
    done: list[BaseException] = []

    def attempt() -> None:
        try:
            open_in_root(root, b"pipe.jpg", library_id="lib")
        except BaseException as exc:  # collected for the assertion
            done.append(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "opening a FIFO blocked"
    assert isinstance(done[0], UnsafePath) and done[0].kind == "not_regular"
    # A character device (a library rooted at /, /dev/null): refused, never opened.
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(UnsafePath, match="not a regular file"):
        open_in_root("/", b"dev/null", library_id="slash")
    # A link to a device inside a root refuses too.
    os.symlink("/dev/zero", root / "zero.jpg")
    with pytest.raises(UnsafePath):
        open_in_root(root, b"zero.jpg", library_id="lib")


def test_non_utf8_names_work_as_bytes(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    d = os.path.join(os.fsencode(root), b"\xff\xfe dir")
    os.makedirs(d)
    with open(os.path.join(d, b"caf\xe9.jpg"), "wb") as f:
        f.write(b"bytes of a latin-1 name")
    with opened_in_root(root, b"\xff\xfe dir/caf\xe9.jpg", library_id="lib") as fd:
        assert os.read(fd, 100) == b"bytes of a latin-1 name"
    with pytest.raises(FileNotFoundError) as info:
        open_in_root(root, b"\xff\xfe dir/caf\xe9 2.jpg", library_id="lib")
    assert info.value.filename == "lib:\\xff\\xfe dir/caf\\xe9 2.jpg"
    fd = open_dir_in_root(root, b"\xff\xfe dir", library_id="lib")
    try:
        assert os.listdir(fd) == ["caf\udce9.jpg"]
    finally:
        os.close(fd)


def test_a_link_swapped_in_while_opening_never_reads_outside(tmp_path: Path, outside: Path) -> None:
    """A writer flips ``race.jpg`` between a file inside and a link to the secret, as fast
    as it can, while it is opened over and over: every open either refuses or reads the
    inside file. The check is on the opened descriptor, so no timing can beat it."""
    root = tmp_path / "lib"
    make_jpeg(root / "good.jpg", seed=5)
    good = (root / "good.jpg").read_bytes()
    secret = (outside / "secret.jpg").read_bytes()
    os.symlink(outside / "secret.jpg", root / ".evil")
    os.link(root / "good.jpg", root / ".good")
    stop = threading.Event()

    def flipper() -> None:
        while not stop.is_set():
            os.symlink(outside / "secret.jpg", root / ".tmp-link")
            os.rename(root / ".tmp-link", root / "race.jpg")
            os.link(root / "good.jpg", root / ".tmp-file")
            os.rename(root / ".tmp-file", root / "race.jpg")

    t = threading.Thread(target=flipper, daemon=True)
    t.start()
    outcomes = {"read": 0, "refused": 0, "missing": 0}
    deadline = time.monotonic() + 2.0
    give_up = deadline + 30.0  # a loaded machine: go on until both outcomes were seen
    try:
        while time.monotonic() < deadline or (
            time.monotonic() < give_up and not (outcomes["read"] and outcomes["refused"])
        ):
            try:
                fd = open_in_root(root, b"race.jpg", library_id="lib")
            except UnsafePath:
                outcomes["refused"] += 1
                continue
            except FileNotFoundError:
                outcomes["missing"] += 1
                continue
            try:
                data = os.read(fd, 1 << 20)
            finally:
                os.close(fd)
            assert data != secret
            assert data == good
            outcomes["read"] += 1
    finally:
        stop.set()
        t.join()
    assert outcomes["read"] > 0 and outcomes["refused"] > 0, outcomes


# ------------------------------------------------------------------ the walk


def test_walk_stays_inside_and_reports_each_escape(tmp_path: Path, outside: Path) -> None:
    root = hostile_library(tmp_path / "lib", outside)
    issues: list[str] = []
    got = {e.rel.decode() for e in walk(os.fsencode(root), Excludes([]), issues.append)}
    assert got == INSIDE_FOLLOWED
    text = "\n".join(issues)
    for name in ("x.jpg", "rel.jpg", "up", "all", "c1.jpg", "c2.jpg", "c3"):
        assert f"symlink leads outside the library, not followed: {name}" in text, name
    for name in ("la.jpg", "lb.jpg"):
        assert f"symlink loop, not followed: {name}" in text
    assert "loop cut (it leads back to a directory above it): loop" in text
    assert str(outside) not in text and str(root) not in text  # library-relative only
    # Watching names a path: the same rules apply from there.
    issues.clear()
    assert list(walk(os.fsencode(root), Excludes([]), issues.append, start=b"all")) == []
    assert issues == ["symlink leads outside the library, not followed: all"]
    issues.clear()
    off = Excludes([], follow_symlinks=False)
    assert {e.rel.decode() for e in walk(os.fsencode(root), off, issues.append)} == INSIDE_PLAIN
    assert any("following symlinks is disabled): albums" in i for i in issues)


# ------------------------------------------------------------------ the pipeline


def _secret_free(events: list[tuple[int, Any]], secret_hash: str) -> None:
    for _, ev in events:
        assert getattr(ev, "content_hash", None) != secret_hash, ev
        path = getattr(ev, "path", None) or ""
        assert "secret" not in path or ev.type in ("FileSeen", "DerivationFailed"), ev


@pytest.mark.parametrize("follow", [True, False], ids=["follow", "no-follow"])
async def test_pipeline_reads_serves_nothing_outside_the_root(
    tmp_path: Path, event_log: EventLog, settings: Settings, outside: Path, follow: bool
) -> None:
    root = hostile_library(tmp_path / "lib", outside)
    secret_hash = b3(outside / "secret.jpg")
    settings = settings.model_copy(update={"follow_symlinks": follow})
    libs = [Library(id="lib", name="lib", root=root)]
    pipeline = Pipeline(event_log, settings, libs)
    async with running(pipeline, workers=("faces",)) as p:
        [report] = await p.scanner.tick(full=True)
        await p.settled(60)
        seen = {ev.path for _, ev in await p.events("FileSeen")}
        assert seen == (INSIDE_FOLLOWED if follow else INSIDE_PLAIN)
        events = await p.events()
        _secret_free(events, secret_hash)
        hashed = {ev.content_hash for _, ev in events if isinstance(ev, HashComputed)}
        assert hashed == {b3(root / "real.jpg"), b3(root / "sub" / "inner.jpg")}
        thumbs = {ev.content_hash for _, ev in events if ev.type == "ThumbnailReady"}
        faces = {ev.content_hash for _, ev in events if ev.type == "FacesDetected"}
        assert thumbs == faces == hashed  # decoded: only what is inside
        issues = "\n".join(report.issues)
        if follow:
            for name in ("x.jpg", "rel.jpg", "up", "all", "c1.jpg", "la.jpg", "loop"):
                assert f": {name}" in issues, name
        else:
            for name in ("x.jpg", "up", "all", "loop", "alias.jpg", "albums"):
                assert f"following symlinks is disabled): {name}" in issues, name
        assert str(outside) not in issues
        async with serve_here(create_app(settings, event_log=event_log, libraries=libs)) as c:
            r = await c.get(f"/photos/{secret_hash}/original")
            assert r.status_code == 404
            real = await c.get(f"/photos/{b3(root / 'real.jpg')}/original")
            assert real.status_code == 200 and real.content == (root / "real.jpg").read_bytes()
            scans = (await c.get("/libraries")).json()["items"][0]["last_scan"]
            assert any(i.endswith(": all") for i in scans["issues"])


async def test_forged_library_and_paths_lead_to_no_read_outside(
    tmp_path: Path, event_log: EventLog, settings: Settings, outside: Path
) -> None:
    """As if published by an intruder: a LibraryOnline of an unconfigured library rooted at
    /, and file events naming the secret through it, through '..' and absolutely."""
    root = tmp_path / "lib"
    make_jpeg(root / "real.jpg", seed=3)
    secret = outside / "secret.jpg"
    secret_hash = b3(secret)
    st = secret.stat()
    libs = [Library(id="lib", name="lib", root=root)]
    evil_rel = str(secret)[1:]  # relative to "/"
    forged_seen = [
        FileSeen(library_id=lib, file_id=file_id(lib, rel.encode()), path=rel, size=st.st_size,
                 mtime_ns=st.st_mtime_ns, media_kind="image")
        for lib, rel in (("evil", evil_rel), ("lib", "../outside/secret.jpg"), ("lib", str(secret)))
    ]  # fmt: skip
    # Each claims its own content hash (the log keeps one event per content and type).
    claimed = [secret_hash, "a" * 64, "b" * 64]
    forged_hashed = [
        HashComputed(content_hash=h, library_id=fs.library_id, file_id=fs.file_id,
                     path=fs.path, size=fs.size, mtime_ns=fs.mtime_ns, media_kind="image")
        for fs, h in zip(forged_seen, claimed, strict=True)
    ]  # fmt: skip
    await event_log.publish(LibraryOnline(library_id="evil", name="evil", root="/"))
    for i, ev in enumerate([*forged_seen, *forged_hashed]):
        await event_log.publish(ev, msg_id=f"forged-{i}")
    async with running(Pipeline(event_log, settings, libs), workers=("faces",)) as p:
        await p.scanner.tick(full=True)

        async def all_failed() -> bool:
            failed = [ev for _, ev in await p.events("DerivationFailed")]
            return len(failed) >= 9  # 3 forged FileSeen (hasher) + 3 HashComputed x 2

        await wait_until(all_failed, 60)
        await p.settled(60)
        events = await p.events()
        derived = ("ThumbnailReady", "FacesDetected", "ExifExtracted")
        assert not [ev for _, ev in events if ev.type in derived and ev.content_hash in claimed]
        forged_seen_again = [
            ev for _, ev in events if isinstance(ev, HashComputed) and ev.content_hash in claimed
        ]
        assert len(forged_seen_again) == 3  # only the forged ones: the secret was never hashed
        reasons = {(ev.stage, ev.library_id, ev.reason) for _, ev in events
                   if ev.type == "DerivationFailed"}  # fmt: skip
        for stage in ("hasher", "media", "faces"):
            assert any(s == stage and lib == "evil" and
                       "library evil is not configured on this host" in why
                       for s, lib, why in reasons), stage  # fmt: skip
            assert any(s == stage and lib == "lib" and "outside its library root" in why
                       for s, lib, why in reasons), stage  # fmt: skip
            assert any(s == stage and lib == "lib" and "an absolute path" in why
                       for s, lib, why in reasons), stage  # fmt: skip
        assert all(str(outside) not in why for *_, why in reasons if "absolute" not in why)
        assert p.hasher.handler.roots.unconfigured.get("evil")
        async with serve_here(create_app(settings, event_log=event_log, libraries=libs)) as c:
            r = await c.get(f"/photos/{secret_hash}/original")
            assert r.status_code == 404
            assert "library evil is not configured on this host" in r.json()["detail"]
            assert secret.read_bytes()[:64] not in r.content
            for h in claimed[1:]:
                r = await c.get(f"/photos/{h}/original")
                assert r.status_code == 404
                assert "outside its library root" in r.json()["detail"]
        # Without any libraries, the API serves no original at all.
        async with serve_here(create_app(settings, event_log=event_log)) as c:
            r = await c.get(f"/photos/{b3(root / 'real.jpg')}/original")
            assert r.status_code == 404 and "lib is not configured" in r.json()["detail"]


async def test_roots_never_come_from_the_log(
    tmp_path: Path, event_log: EventLog, outside: Path
) -> None:
    await event_log.publish(LibraryOnline(library_id="evil", name="evil", root="/"))
    roots = LibraryRoots([Library(id="lib", name="lib", root=tmp_path)])
    await roots.refresh(event_log)
    assert roots("evil") is None and roots.unconfigured == {"evil": 1}
    fs = FileSeen(library_id="evil", file_id="f", path=str(outside / "secret.jpg")[1:], size=1,
                  mtime_ns=1, media_kind="image")  # fmt: skip
    with pytest.raises(LibraryNotConfigured, match="library evil is not configured on this host"):
        roots.open_fd(fs)
    assert roots.unconfigured == {"evil": 2}
    bad = fs.model_copy(update={"library_id": "lib", "raw_path": "!!not base64!!"})
    with pytest.raises(PermanentError, match="unusable path"):
        roots.open_fd(bad)
