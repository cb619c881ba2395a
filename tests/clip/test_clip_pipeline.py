"""The clip worker, projector, index and API end to end: real nats-server, real SQLite,
real JPEGs, real onnxruntime with tiny models in the Immich layout."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from eventsvc.components import clip_spec, make_worker
from eventsvc.core.log import EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.settings import Library, Settings
from eventsvc.derive.clip import reencode
from eventsvc.inference.models import ConfiguredClip
from projections import readmodel
from projections.app import create_app
from projections.projector import rebuild
from tests.clip.tiny import colour_image
from tests.harness import Pipeline, b3, cli, running, wait_until


def _library(root: Path) -> dict[str, Path]:
    """Red, green and blue photos (two reds), a copy of red elsewhere, a corrupt JPEG."""
    files = {}
    for name, colour, size in (
        ("red1.jpg", "red", (90, 60)),
        ("red2.jpg", "red", (60, 90)),
        ("green.jpg", "green", (80, 80)),
        ("blue.jpg", "blue", (100, 50)),
    ):
        path = root / "a" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        colour_image(colour, size).save(path, quality=90)
        files[name] = path
    shutil.copy(files["red1.jpg"], root / "b.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" + bytes(300))
    files["broken.jpg"] = root / "broken.jpg"
    return files


def _settings(settings: Settings, model: Path | None, **kw: Any) -> Settings:
    return settings.model_copy(
        update={"clip_model_dir": model, "clip_batch": 4, "clip_batch_window": 0.05,
                "clip_recheck_interval": 0.3, **kw}
    )  # fmt: skip


async def _search(c: AsyncTestClient[Any], **params: Any) -> dict[str, Any]:
    r = await c.get("/photos/search", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _pages(
    c: AsyncTestClient[Any], url: str, params: dict[str, Any], limit: int
) -> list[list[str]]:
    """Every page's content hashes, following `next` to the end."""
    out: list[list[str]] = []
    cursor = None
    while True:
        q = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await c.get(url, params=q)
        assert r.status_code == 200, r.text
        page = r.json()
        out.append([i["content_hash"] for i in page["items"]])
        cursor = page["next"]
        if cursor is None:
            return out
        assert len(out) < 50, "paging does not end"


async def test_clip_pipeline_search_similar_filters_and_rebuild(
    event_log: EventLog, settings: Settings, tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    root = tmp_path / "lib"
    files = _library(root)
    settings = _settings(settings, tiny_models[0])
    lib = Library(id="lib", name="lib", root=root)
    async with running(Pipeline(event_log, settings, [lib]), workers=("clip",)) as pipe:
        await pipe.scanner.tick(full=True)
        await pipe.settled(timeout=60)
        worker = pipe.workers["clip"]
        assert worker.stats.model_error is None and worker.stats.model.startswith("tiny-a-")
        encoded = await pipe.events("ClipEncoded")
        # 5 image locations, 4 distinct decodable contents: each encoded once.
        hashes = sorted(e.content_hash for _, e in encoded)
        assert len(hashes) == 4 == len(set(hashes))
        assert worker.stats.batches < 4  # batched, not one by one
        failures = [e for _, e in await pipe.events("DerivationFailed") if e.stage == "clip"]
        assert [f.content_hash for f in failures] == [b3(files["broken.jpg"])]
        assert "cannot decode for CLIP" in failures[0].reason

        async with AsyncTestClient(
            create_app(settings, clip=ConfiguredClip(settings)), base_url="http://127.0.0.1"
        ) as c:
            page = await _search(c, q="red")
            items = page["items"]
            assert page["model_version"] == worker.stats.model and page["next"] is None
            assert {i["content_hash"] for i in items[:2]} == {
                b3(files["red1.jpg"]),
                b3(files["red2.jpg"]),
            }
            assert len(items) == 2  # green and blue score below the 0.2 threshold
            assert items[0]["score"] >= items[1]["score"] > 0.8
            red1 = next(i for i in items if i["content_hash"] == b3(files["red1.jpg"]))
            assert red1["path"] == "a/red1.jpg"  # first location by path, not b.jpg
            low = (await _search(c, q="blue", threshold=-1.0))["items"]
            assert len(low) == 4 and low[0]["path"] == "a/blue.jpg"
            assert [i["score"] for i in low] == sorted((i["score"] for i in low), reverse=True)
            # Filters select candidates before ranking.
            only = (await _search(c, q="red", path_prefix="b", threshold=-1))["items"]
            assert [i["path"] for i in only] == ["b.jpg"]
            assert (await _search(c, q="red", path_prefix="a/green", threshold=0.2))["items"] == []
            assert (await _search(c, q="red", library="nope"))["items"] == []
            bad = await c.get("/photos/search", params={"q": "red", "taken_to": "yesterday"})
            assert bad.status_code == 400 and "taken_to" in bad.json()["detail"]
            # Similar: the other red first, itself left out.
            r = await c.get(f"/photos/{b3(files['red1.jpg'])}/similar", params={"limit": 2})
            assert r.status_code == 200, r.text
            sim = r.json()["items"]
            assert sim[0]["content_hash"] == b3(files["red2.jpg"])
            assert b3(files["red1.jpg"]) not in {i["content_hash"] for i in sim}
            r = await c.get(f"/photos/{b3(files['red2.jpg'])}/similar", params={"path_prefix": "b"})
            assert [i["path"] for i in r.json()["items"]] == ["b.jpg"]  # filters apply too
            r = await c.get(f"/photos/{b3(files['red2.jpg'])}/similar", params={"orientation": 9})
            assert r.status_code == 400 and "orientation" in r.json()["detail"]
            r = await c.get(f"/photos/{'0' * 64}/similar")
            assert r.status_code == 404 and "no CLIP embedding" in r.json()["detail"]
            r = await c.get("/photos/search", params={"q": "red", "model_version": "nope"})
            assert r.status_code == 400 and "model_version" in r.json()["detail"]

            # Paging: cursors walk the same ranking, `next` is null on the last page.
            assert await _pages(c, "/photos/search", {"q": "blue", "threshold": -1}, 3) == [
                [i["content_hash"] for i in low[:3]], [low[3]["content_hash"]],
            ]  # fmt: skip
            one_by_one = await _pages(c, "/photos/search", {"q": "blue", "threshold": -1}, 1)
            assert [p[0] for p in one_by_one] == [i["content_hash"] for i in low]
            sim_pages = await _pages(c, f"/photos/{b3(files['red1.jpg'])}/similar", {}, 2)
            assert [len(p) for p in sim_pages] == [2, 1]
            assert sim_pages[0] == [i["content_hash"] for i in sim]
            r = await c.get("/photos/search", params={"q": "red", "cursor": "bm9wZQ"})
            assert r.status_code == 400 and "cursor" in r.json()["detail"]
            first = await _search(c, q="blue", threshold=-1, limit=1)
            r = await c.get(
                f"/photos/{b3(files['red1.jpg'])}/similar", params={"cursor": first["next"]}
            )
            assert r.status_code == 400 and "cursor" in r.json()["detail"]
            pinned = await _search(c, q="green", threshold=-1, limit=2)
            # The filters' candidates are cached until the read model moves on.
            hits_before = c.app.state["clip_search"].candidate_hits
            greens_in_a = await _search(c, q="green", path_prefix="a/")
            assert [i["path"] for i in greens_in_a["items"]] == ["a/green.jpg"]
            again = await _search(c, q="red", path_prefix="b", threshold=-1)
            assert [i["path"] for i in again["items"]] == [i["path"] for i in only]
            assert c.app.state["clip_search"].candidate_hits == hits_before + 1

            # The CLI prints the same top hits, straight from the read model.
            proc = cli("search", "red", "--data-dir", str(settings.data_dir), "--json",
                       env={"EVENTSVC_CLIP_MODEL_DIR": str(tiny_models[0])})  # fmt: skip
            out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
            assert proc.returncode == 0, out.decode()
            lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
            assert [x["content_hash"] for x in lines] == [i["content_hash"] for i in items]

            # Incremental: a new photo is projected and found without reloading the index.
            search = c.app.state["clip_search"]
            loaded = search.index.loaded_rows
            colour_image("green", (70, 70)).save(root / "a" / "green2.jpg", quality=90)
            await pipe.scanner.tick(full=True)
            await pipe.settled(timeout=60)
            greens = (await _search(c, q="green"))["items"]
            assert {i["path"] for i in greens} == {"a/green.jpg", "a/green2.jpg"}
            greens_in_a = await _search(c, q="green", path_prefix="a/")
            assert {i["path"] for i in greens_in_a["items"]} == {"a/green.jpg", "a/green2.jpg"}
            assert search.index.loaded_rows == loaded + 1
            # A cursor taken before green2 arrived goes on over the vectors it saw.
            rest = await _search(c, q="green", threshold=-1, limit=10, cursor=pinned["next"])
            seen = [i["content_hash"] for i in pinned["items"] + rest["items"]]
            assert sorted(seen) == hashes and rest["next"] is None
            hits_before = search.cache_hits
            await _search(c, q="green")
            assert search.cache_hits == hits_before + 1  # the query embedding was cached

            # A rebuild swaps the read model; search keeps answering, then follows it.
            old = search.index.generation
            await rebuild(event_log, settings.readmodel_dir)
            assert readmodel.current_path(settings.readmodel_dir) != old
            during = await _search(c, q="green")
            assert len(during["items"]) == 2
            search.index.wait_loaded()
            await wait_until(lambda: search.index.sync().path != old, timeout=20)
            after = await _search(c, q="green")
            assert [i["path"] for i in after["items"]] == [i["path"] for i in during["items"]]
            assert search.index.generation == readmodel.current_path(settings.readmodel_dir)


def _vectors(pipe: Pipeline) -> int:
    conn = pipe.db()
    try:
        return int(conn.execute("SELECT count(*) FROM clip_vectors").fetchone()[0])
    finally:
        conn.close()


async def test_no_model_pauses_clip_only_then_model_files_start_it(
    event_log: EventLog, settings: Settings, tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    root = tmp_path / "lib"
    files = _library(root)
    settings = _settings(settings, None, clip_model="someone/tiny-clip")  # offline: no model
    lib = Library(id="lib", name="lib", root=root)
    async with running(Pipeline(event_log, settings, [lib]), workers=()) as pipe:
        clip = await make_worker("clip", event_log, settings, [lib])
        stop = asyncio.Event()
        task = asyncio.create_task(clip.run(stop))
        try:
            await pipe.scanner.tick(full=True)
            await wait_until(lambda: clip.stats.model_error is not None, 20)
            assert "someone/tiny-clip" in clip.stats.model_error
            assert "EVENTSVC_CLIP_MODEL_DIR" in clip.stats.model_error
            await pipe.settled(timeout=60)  # everything else works
            conn = pipe.db()
            assert conn.execute("SELECT count(*) FROM thumbnails").fetchone()[0] == 4
            conn.close()
            status = await event_log.get_status("worker.clip")
            assert status is not None and "someone/tiny-clip" in status["model_error"]
            assert clip.stats.failed == 0 and clip.stats.done == 0  # nothing consumed
            proc = cli("status", "--json", "--nats-url", str(settings.nats_url),
                       "--data-dir", str(settings.data_dir))  # fmt: skip
            out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
            shown = json.loads(out.decode()[out.decode().index("{") :])
            assert "someone/tiny-clip" in shown["workers"]["clip"]["model_error"]
            async with AsyncTestClient(
                create_app(settings, clip=ConfiguredClip(settings)), base_url="http://127.0.0.1"
            ) as c:
                r = await c.get("/photos/search", params={"q": "red"})
                assert r.status_code == 503, r.text
                assert "someone/tiny-clip" in r.json()["detail"]
                # The files arrive: the worker starts on its own, no restart.
                shutil.copytree(tiny_models[0], settings.models_dir / "someone--tiny-clip")
                await wait_until(lambda: clip.stats.encoded == 4, 30)
                assert clip.stats.model_error is None
                await wait_until(lambda: _vectors(pipe) == 4, 30)
                search = c.app.state["clip_search"]
                search.encoders._failed.clear()  # skip the retry delay of the query encoder
                items = (await _search(c, q="red"))["items"]
                assert items[0]["content_hash"] in {b3(files["red1.jpg"]), b3(files["red2.jpg"])}
        finally:
            stop.set()
            await task


async def test_reencode_with_a_second_model_while_the_first_serves(
    event_log: EventLog, settings: Settings, tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    root = tmp_path / "lib"
    files = _library(root)
    settings = _settings(settings, tiny_models[0])
    lib = Library(id="lib", name="lib", root=root)
    async with running(Pipeline(event_log, settings, [lib]), workers=("clip",)) as pipe:
        await pipe.scanner.tick(full=True)
        await pipe.settled(timeout=60)
        first = pipe.workers["clip"].stats.model
        async with AsyncTestClient(
            create_app(settings, clip=ConfiguredClip(settings)), base_url="http://127.0.0.1"
        ) as c:
            assert (await _search(c, q="blue"))["model_version"] == first
            roots = LibraryRoots([lib])
            seen: list[dict[str, Any]] = []
            versions: list[tuple[str | None, int]] = []

            def progress(state: dict[str, Any]) -> None:
                seen.append(state)

            def others() -> int:  # vectors of any model but the first, in the read model
                conn = pipe.db()
                try:
                    sql = "SELECT count(*) FROM clip_vectors WHERE model_version != ?"
                    return int(conn.execute(sql, (first,)).fetchone()[0])
                finally:
                    conn.close()

            async def poll() -> None:
                while True:
                    version = (await _search(c, q="blue"))["model_version"]
                    versions.append((version, others()))  # B's vectors after the answer
                    await asyncio.sleep(0.05)

            poller = asyncio.create_task(poll())
            try:
                result = await reencode(
                    event_log, settings, roots, str(tiny_models[1]), progress=progress,
                    spec_for=lambda durable: clip_spec(settings, durable),
                )  # fmt: skip
            finally:
                poller.cancel()
            second = result["model_version"]
            assert second != first and result["encoded"] == 4 and result["failed"] == 1
            assert {v for v, _ in versions} <= {first, second}
            # The complete model served while B was partial (B still short of 4 vectors
            # after the answer): never B.
            assert all(v == first for v, b in versions if b < 4), versions
            await pipe.settled(timeout=30)
            last = await event_log.last_seq()
            await wait_until(lambda: pipe.projector.status.last_seq >= last, 20)
            page = await _search(c, q="blue")
            assert page["model_version"] == second  # newest complete model now
            assert page["items"][0]["path"] == "a/blue.jpg"
            old = await _search(c, q="blue", model_version=first)
            assert old["model_version"] == first and old["items"][0]["path"] == "a/blue.jpg"
            # Each content has one vector per model.
            conn = pipe.db()
            per_model = dict(
                conn.execute(
                    "SELECT model_version, count(*) FROM clip_vectors GROUP BY model_version"
                ).fetchall()
            )
            conn.close()
            assert per_model == {first: 4, second: 4}
            assert (settings.models_dir / "registry.json").exists()
            assert {i["path"] for i in (await _search(c, q="red"))["items"]} == {
                "a/red1.jpg",
                "a/red2.jpg",
            }
            assert files["red1.jpg"].exists()
