"""Library configuration as events (issue 16), on a real nats-server and SQLite: the API
adds, disables, re-excludes and removes libraries; the scanner (wired as ``up`` wires it)
picks every change up without a restart; bad roots are refused by the API and ignored by
every folder; the TOML reconcile writes nothing on an unchanged start."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventsvc.cli_run import reconcile_libraries
from eventsvc.components import make_worker
from eventsvc.core.events import LibraryAdded, LibraryRemoved, decode
from eventsvc.core.library_config import CatalogFollower, config_subjects, load_catalog
from eventsvc.core.library_state import LibraryState
from eventsvc.core.log import EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.settings import Library, Settings
from eventsvc.scanner import Scanner
from projections.app import create_app
from projections.projector import Projector
from tests.harness import make_jpeg, wait_until
from tests.test_trust_files import serve_here


class Stack:
    """What ``up`` runs (scanner following the configuration, hasher, projector) plus an
    API app on the same stream."""

    def __init__(self, event_log: EventLog, settings: Settings) -> None:
        self.event_log, self.settings = event_log, settings
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []

    async def start(self, libraries: list[Library]) -> Stack:
        catalog = await reconcile_libraries(self.event_log, self.settings, libraries)
        self.catalog = catalog
        self.scanner = Scanner(
            self.event_log, catalog.enabled(), self.settings,
            catalog=CatalogFollower(self.event_log, catalog),
        )  # fmt: skip
        hasher = await make_worker("hasher", self.event_log, self.settings, [], catalog=catalog)
        self.projector = Projector(self.event_log, self.settings.readmodel_dir, batch=200)
        for run in (self.scanner.run, hasher.run, self.projector.run):
            self.tasks.append(asyncio.create_task(run(self.stop)))
        self.app = create_app(self.settings, event_log=self.event_log, catalog=catalog)
        return self

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def caught_up(self) -> None:
        last = await self.event_log.last_seq()
        await wait_until(lambda: self.projector.status.last_seq >= last, 30)


async def events_of(event_log: EventLog, library_id: str | None = None) -> list[Any]:
    out = []
    async for batch in event_log.read():
        for raw in batch:
            ev = decode(raw.data, raw.headers)
            if library_id is None or getattr(ev, "library_id", None) == library_id:
                out.append(ev)
    return out


@pytest.fixture
def lib_settings(settings: Settings) -> Settings:
    # ticks far apart: whatever happens within a test happens because of a change
    return settings.model_copy(update={"quick_interval": 120.0, "settle_seconds": 0.0})


@pytest.fixture
async def stack(
    event_log: EventLog, lib_settings: Settings, tmp_path: Path
) -> AsyncIterator[Stack]:
    a = tmp_path / "a"
    make_jpeg(a / "one.jpg", seed=1)
    s = Stack(event_log, lib_settings)
    await s.start([Library("a", "A", a)])
    try:
        yield s
    finally:
        await s.close()


async def photo_paths(client: httpx.AsyncClient) -> set[tuple[str, str]]:
    r = await client.get("/photos", params={"limit": 200})
    assert r.status_code == 200, r.text
    return {(p["library"], p["path"]) for p in r.json()["items"]}


async def libraries(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await client.get("/libraries")
    assert r.status_code == 200, r.text
    return {lib["library_id"]: lib for lib in r.json()["items"]}


async def test_added_library_is_scanned_at_once_then_disabled_then_excluded_then_removed(
    stack: Stack, tmp_path: Path
) -> None:
    b = tmp_path / "b"
    for i, rel in enumerate(["x1.jpg", "x2.jpg", "x3.jpg", "sub/y.jpg"]):
        make_jpeg(b / rel, seed=10 + i)
    async with serve_here(stack.app) as client:
        await wait_until(lambda: photo_paths(client), 30)  # library a is in
        # ---- add: scanned without a restart, long before the next tick
        r = await client.post("/libraries", json={"root": str(b), "name": "Bee"})
        assert r.status_code == 202, r.text
        lib_id = r.json()["library_id"]
        assert lib_id == "bee"
        want = {("bee", "x1.jpg"), ("bee", "x2.jpg"), ("bee", "x3.jpg"), ("bee", "sub/y.jpg")}

        async def has_b() -> bool:
            return want <= await photo_paths(client)

        await wait_until(has_b, 20)
        libs = await libraries(client)
        assert libs["bee"]["state"] == "online" and libs["bee"]["configured"]
        # the workers' roots follow the configuration: b's root is readable to them
        assert LibraryRoots([], catalog=stack.catalog).root("bee") == b

        # ---- excludes: newly excluded files leave through FileMissing (guarded path)
        r = await client.patch("/libraries/bee", json={"excludes": ["sub"]})
        assert r.status_code == 202, r.text

        async def sub_gone() -> bool:
            return ("bee", "sub/y.jpg") not in await photo_paths(client)

        await wait_until(sub_gone, 20)
        missing = [e for e in await events_of(stack.event_log, "bee") if e.type == "FileMissing"]
        assert [e.path for e in missing] == ["sub/y.jpg"]
        assert want - {("bee", "sub/y.jpg")} <= await photo_paths(client)

        # ---- disable: shows disabled, no longer scanned (no new events on its subjects)
        r = await client.patch("/libraries/bee", json={"enabled": False})
        assert r.status_code == 202, r.text
        await wait_until(lambda: all(lib.id != "bee" for lib in stack.scanner.libraries), 10)
        await stack.caught_up()
        libs = await libraries(client)
        assert libs["bee"]["state"] == "disabled" and libs["bee"]["enabled"] is False
        assert libs["a"]["state"] == "online"
        before = len(await events_of(stack.event_log, "bee"))
        make_jpeg(b / "new.jpg", seed=99)
        (b / "x1.jpg").unlink()
        await stack.scanner.tick(full=True)  # a tick scans library a only
        assert len(await events_of(stack.event_log, "bee")) == before
        assert ("bee", "x1.jpg") in await photo_paths(client)  # its photos stay

        # ---- remove: its locations leave every listing; a's stay
        r = await client.delete("/libraries/bee")
        assert r.status_code == 202, r.text
        await stack.caught_up()
        paths = await photo_paths(client)
        assert not {p for p in paths if p[0] == "bee"} and ("a", "one.jpg") in paths
        assert "bee" not in await libraries(client)
        assert (await client.delete("/libraries/bee")).status_code == 404
        with pytest.raises(Exception, match="not configured"):
            LibraryRoots([], catalog=stack.catalog).root("bee")
        # the video clean-up's fold: a removed library's files hold no content live
        state = LibraryState()
        await state.catch_up(stack.event_log)
        assert not [f for f in state.files.values() if f.library_id == "bee"]
        assert "bee" in state.not_scanned()

        # ---- added again: scanned again, its files back (the current ones)
        r = await client.post("/libraries", json={"root": str(b), "name": "Bee"})
        assert r.status_code == 202 and r.json()["library_id"] == "bee", r.text

        async def back() -> bool:
            got = {p for p in await photo_paths(client) if p[0] == "bee"}
            return got == {("bee", "x2.jpg"), ("bee", "x3.jpg"), ("bee", "new.jpg"),
                           ("bee", "sub/y.jpg")}  # fmt: skip

        await wait_until(back, 20)


async def test_bad_roots_are_refused_by_the_api_and_ignored_by_folders(
    stack: Stack, tmp_path: Path
) -> None:
    a = tmp_path / "a"
    (a / "inner").mkdir()
    stack.settings.data_dir.mkdir(parents=True, exist_ok=True)
    bad = {
        "relative": "photos/b",
        "inside a": str(a / "inner"),
        "around a": str(tmp_path),
        "the data dir": str(stack.settings.data_dir),
        "not normalised": str(tmp_path / "b" / ".." / "a2"),
        "absent": str(tmp_path / "nowhere"),
    }
    async with serve_here(stack.app) as client:
        for what, root in bad.items():
            r = await client.post("/libraries", json={"root": root})
            assert r.status_code == 400, (what, r.text)
        r = await client.post("/libraries", json={"root": str(a)})
        assert r.status_code == 409, r.text  # already library a
        r = await client.post(
            "/libraries", content=b"root=/x", headers={"content-type": "text/plain"}
        )
        assert r.status_code == 415

        # published past the API (as the api user could): every folder ignores them
        sneaky = {
            "rel": "relative/root",
            "in-a": str(a / "inner"),
            "data": str(stack.settings.data_dir),
        }
        for lib_id, root in sneaky.items():
            await stack.event_log.publish(LibraryAdded(library_id=lib_id, name=lib_id, root=root))
        await stack.caught_up()
        fresh = await load_catalog(stack.event_log, stack.settings.data_dir)
        assert set(fresh.refused) == set(sneaky) and set(fresh.libraries) == {"a"}
        await wait_until(lambda: set(stack.catalog.refused) == set(sneaky), 10)
        assert [lib.id for lib in stack.scanner.libraries] == ["a"]
        libs = await libraries(client)
        # (the projector knows no data dir; /libraries leaves that one out itself)
        assert "rel" not in libs and "in-a" not in libs and "data" not in libs
        for lib_id in sneaky:
            with pytest.raises(Exception, match="not configured"):
                LibraryRoots([], catalog=stack.catalog).root(lib_id)


async def test_toml_reconcile_writes_once_and_nothing_on_an_unchanged_start(
    event_log: EventLog, lib_settings: Settings, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    libs = [Library("a", "A", a), Library("b", "B", b, enabled=False, exclude=("*.tmp2",))]

    async def config_events() -> list[Any]:
        out = []
        async for batch in event_log.read(config_subjects(event_log.prefix)):
            out += [decode(r.data, r.headers) for r in batch]
        return out

    await reconcile_libraries(event_log, lib_settings, libs)
    first = await config_events()
    assert [(e.type, e.library_id, e.enabled, e.excludes) for e in first] == [
        ("LibraryAdded", "a", True, ()),
        ("LibraryAdded", "b", False, ("*.tmp2",)),
    ]
    await reconcile_libraries(event_log, lib_settings, libs)
    assert len(await config_events()) == 2  # an unchanged second start writes nothing
    libs[1] = Library("b", "B", b, enabled=True, exclude=("*.tmp2",))
    catalog = await reconcile_libraries(event_log, lib_settings, libs)
    changed = (await config_events())[2:]
    assert [(e.type, e.library_id, e.enabled, e.name, e.excludes) for e in changed] == [
        ("LibraryUpdated", "b", True, None, None)
    ]
    assert {lib.id for lib in catalog.enabled()} == {"a", "b"}
    # removed through the API: a start with the kept libraries (no PATH, no --config)
    # does not bring it back; one that names it again does
    await event_log.publish(LibraryRemoved(library_id="b"))
    catalog = await reconcile_libraries(event_log, lib_settings, libs, given=False)
    assert set(catalog.libraries) == {"a"} and len(await config_events()) == 4
    catalog = await reconcile_libraries(event_log, lib_settings, libs, given=True)
    assert set(catalog.libraries) == {"a", "b"}
    assert [e.type for e in await config_events()][4:] == ["LibraryAdded"]


async def test_the_first_start_with_kept_libraries_migrates_them(
    event_log: EventLog, lib_settings: Settings, tmp_path: Path
) -> None:
    a = tmp_path / "a"
    a.mkdir()
    catalog = await reconcile_libraries(
        event_log, lib_settings, [Library("a", "A", a)], given=False
    )
    assert set(catalog.libraries) == {"a"}  # a log without configuration gets it once


async def test_two_apis_on_one_stream_agree(stack: Stack, nats_server: Any, tmp_path: Path) -> None:
    other_log = await EventLog.connect(nats_server.url)
    follower = CatalogFollower(other_log, await load_catalog(other_log, stack.settings.data_dir))
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    other = create_app(stack.settings, event_log=other_log, catalog=follower.catalog)
    c = tmp_path / "c"
    make_jpeg(c / "c.jpg", seed=5)
    try:
        async with (
            serve_here(stack.app) as one,
            serve_here(other) as two,
        ):
            r = await two.post("/libraries", json={"root": str(c), "id": "cee"})
            assert r.status_code == 202, r.text
            await wait_until(lambda: "cee" in stack.catalog.libraries, 10)
            await wait_until(lambda: "cee" in follower.catalog.libraries, 10)
            r = await one.patch("/libraries/cee", json={"name": "Sea", "enabled": False})
            assert r.status_code == 202, r.text
            await wait_until(lambda: follower.catalog.libraries["cee"].name == "Sea", 10)
            await stack.caught_up()
            seen_one, seen_two = await libraries(one), await libraries(two)
            assert seen_one == seen_two
            assert seen_two["cee"]["name"] == "Sea" and seen_two["cee"]["state"] == "disabled"
            assert stack.catalog.libraries == follower.catalog.libraries
            # a retried request (same Idempotency-Key) records nothing new
            h = {"Idempotency-Key": "k-1"}
            r1 = await two.patch("/libraries/cee", json={"enabled": True}, headers=h)
            r2 = await one.patch("/libraries/cee", json={"enabled": True}, headers=h)
            assert r1.json()["duplicate"] is False and r2.json()["duplicate"] is True
            assert r1.json()["seqs"] == r2.json()["seqs"]
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        await other_log.close()


def test_only_the_api_user_may_publish_library_configuration() -> None:
    from eventsvc.core.natsauth import ROLES, library_config_subjects, publishes

    subjects = set(library_config_subjects())
    assert subjects <= set(publishes("api"))
    for role in ROLES:
        if role != "api":
            assert not subjects & set(publishes(role)), role
