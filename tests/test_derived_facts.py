"""Derived facts from a real library, scanner -> hasher -> media/playlist -> projector ->
API (issue 13, items 6-8): full upright dimensions, XMP dates with their own source,
cut-short media recorded as failures and never thumbnailed or made into a playlist."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient
from PIL import Image

from eventsvc.core.events import HashComputed
from eventsvc.core.log import EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.settings import Library, Settings, load_libraries
from eventsvc.derive.media import MAX_SIDECAR, MediaDeriver
from projections.app import create_app
from tests.harness import Pipeline, b3, running
from tests.media.heif_grid import grid_heic
from tests.video.media import make

XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"'
    " {}/></rdf:RDF></x:xmpmeta>"
)


def _library(lib: Path) -> dict[str, Path]:
    lib.mkdir(parents=True)
    ex = Image.Exif()
    ex[0x0112] = 6
    ex.get_ifd(0x8769)[0xA002] = 1632  # PixelXDimension: stale, half the frame
    ex.get_ifd(0x8769)[0xA003] = 1224
    big = lib / "big.jpg"
    Image.linear_gradient("L").resize((3264, 2448)).convert("RGB").save(big, quality=60, exif=ex)
    embedded = lib / "embedded.jpg"
    Image.new("RGB", (80, 60), (1, 2, 3)).save(
        embedded, xmp=XMP.format('xmp:CreateDate="2012-03-04T05:06:07"').encode()
    )
    sidecar = lib / "scan.jpg"
    Image.new("RGB", (80, 60), (4, 5, 6)).save(sidecar)
    (lib / "scan.xmp").write_text(XMP.format('photoshop:DateCreated="1999-12-31"'))
    heic = grid_heic(Image.effect_noise((512, 256), 60).convert("RGB"), columns=4)
    (lib / "cut.heic").write_bytes(heic[: len(heic) * 3 // 4])
    video = make(lib / "whole.mp4", seconds=3, extra=("-movflags", "+faststart"))
    data = video.read_bytes()
    (lib / "cut.mp4").write_bytes(data[: len(data) * 2 // 3])
    video.unlink()
    return {p.name: p for p in lib.iterdir()}


async def test_dimensions_dates_and_truncated_media_end_to_end(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    files = _library(tmp_path / "lib")
    libs, _ = load_libraries([str(tmp_path / "lib")])
    async with running(Pipeline(event_log, settings, libs), workers=("playlist",)) as p:
        await p.scanner.tick(full=True)
        await p.settled(timeout=90)
        app = create_app(settings, libraries=libs)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            got = client.get("/photos", params={"limit": 50}).json()["items"]
            by = {item["path"]: item for item in got}
            assert (by["big.jpg"]["width"], by["big.jpg"]["height"]) == (2448, 3264)
            detail = client.get(f"/photos/{b3(files['big.jpg'])}").json()
            assert (detail["width"], detail["height"]) == (2448, 3264)
            assert by["embedded.jpg"]["date_source"] == "xmp"
            assert by["embedded.jpg"]["date_taken"] == "2012-03-04T05:06:07"
            assert by["scan.jpg"]["date_source"] == "xmp_sidecar"
            assert by["scan.jpg"]["date_taken"] == "1999-12-31T00:00:00"
        conn = p.db()
        try:
            failed: dict[str, set[str]] = {}
            for operation, content_hash in conn.execute(
                "SELECT operation, content_hash FROM failures"
            ):
                failed.setdefault(content_hash, set()).add(operation)
            thumbs = {r[0] for r in conn.execute("SELECT content_hash FROM thumbnails")}
            playlists = {r[0] for r in conn.execute("SELECT content_hash FROM playlists")}
        finally:
            conn.close()
        heic, mp4 = b3(files["cut.heic"]), b3(files["cut.mp4"])
        assert "thumbnail" in failed.get(heic, set()) and heic not in thumbs
        assert {"thumbnail", "playlist"} <= failed.get(mp4, set())
        assert mp4 not in thumbs and mp4 not in playlists
        assert b3(files["big.jpg"]) in thumbs


def test_sidecar_is_read_under_the_root_and_bounded(tmp_path: Path) -> None:
    root, outside = tmp_path / "lib", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "leak.xmp").write_text(XMP.format('xmp:CreateDate="2001-01-01T00:00:00"'))
    deriver = MediaDeriver(LibraryRoots([Library(id="L", name="L", root=root)]), tmp_path, None)  # type: ignore[arg-type]

    def date_of(name: str) -> tuple[str | None, list[str]]:
        path = root / name
        Image.new("RGB", (8, 8)).save(path)
        st = path.stat()
        event = HashComputed(
            content_hash=b3(path), library_id="L", file_id=name, path=name,
            size=st.st_size, mtime_ns=st.st_mtime_ns, media_kind="image",
        )  # fmt: skip
        warnings: list[str] = []
        return deriver._sidecar_date(event, warnings), warnings

    (root / "a.jpg.xmp").write_text(XMP.format('xmp:CreateDate="2002-02-02T02:02:02"'))
    (root / "a.xmp").write_text(XMP.format('xmp:CreateDate="2003-03-03T03:03:03"'))
    assert date_of("a.jpg") == ("2002-02-02T02:02:02", [])  # <name>.xmp first
    (root / "b.XMP").write_text(XMP.format('photoshop:DateCreated="2004-04-04"'))
    assert date_of("b.jpg") == ("2004-04-04T00:00:00", [])
    big = b" " * MAX_SIDECAR + XMP.format('xmp:CreateDate="2005-05-05"').encode()
    (root / "c.xmp").write_bytes(big)
    date, warnings = date_of("c.jpg")
    assert date is None and any("over" in w for w in warnings)
    (root / "d.xmp").symlink_to(outside / "leak.xmp")  # out of the library: refused
    date, warnings = date_of("d.jpg")
    assert date is None and warnings
    assert date_of("e.jpg") == (None, [])  # no sidecar at all
