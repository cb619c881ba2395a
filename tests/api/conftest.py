"""Fixtures for the API tests: real read models built from real events, real nats-server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from eventsvc.components import SandboxDecoder
from eventsvc.core.events import (
    DerivationFailed,
    Event,
    FileMissing,
    FileSeen,
    HashComputed,
    LibraryOnline,
    LibraryStale,
    ThumbnailReady,
    encode,
    headers_for,
)
from eventsvc.core.ids import file_id
from eventsvc.core.log import RawEvent
from eventsvc.core.settings import Library, Settings
from eventsvc.server import EmbeddedNats
from projections import readmodel
from projections.app import create_app
from projections.projector import apply_batch

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SECOND = 1_000_000_000


def h(n: int) -> str:
    """A well-formed content hash."""
    return f"{n:064x}"


def online(library_id: str, name: str | None = None) -> LibraryOnline:
    return LibraryOnline(
        library_id=library_id, name=name or library_id.title(), root=f"/mnt/{library_id}",
        occurred_at=T0,
    )  # fmt: skip


def stale(library_id: str, reason: str) -> LibraryStale:
    return LibraryStale(
        library_id=library_id, name=library_id.title(), root=f"/mnt/{library_id}",
        reason=reason, occurred_at=T0,
    )  # fmt: skip


def seen(
    library_id: str, path: str, *, size: int = 100, mtime_s: int = 1_700_000_000,
    kind: str = "image",
) -> FileSeen:  # fmt: skip
    return FileSeen(
        library_id=library_id, file_id=file_id(library_id, path.encode()), path=path,
        size=size, mtime_ns=mtime_s * SECOND, media_kind=kind,  # type: ignore[arg-type]
    )  # fmt: skip


def hashed(fs: FileSeen, content_hash: str, **extra: object) -> HashComputed:
    return HashComputed(
        content_hash=content_hash, library_id=fs.library_id, file_id=fs.file_id, size=fs.size,
        mtime_ns=fs.mtime_ns, media_kind=fs.media_kind, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def missing(fs: FileSeen) -> FileMissing:
    return FileMissing(library_id=fs.library_id, file_id=fs.file_id, path=fs.path)


def failed(stage: str, n: int) -> DerivationFailed:
    return DerivationFailed(
        stage=stage, reason=f"boom {n}", input_subject=f"photos.file.f{n}.FileSeen",
        file_id=f"f{n}", library_id="alpha",
    )  # fmt: skip


def thumbnailed(content_hash: str, **facts: Any) -> ThumbnailReady:
    """The media deriver's fact: thumbnails (paths as it names them) and, from the same
    decode, the upright size and the perceptual hashes."""
    sizes = {s: f"{content_hash[:2]}/{content_hash}/{s}.jpg" for s in ("small", "large")}
    return ThumbnailReady(content_hash=content_hash, sizes=sizes, **facts)


def undecodable(fs: FileSeen, content_hash: str, why: str) -> DerivationFailed:
    """What the media deriver writes for an image it cannot decode for thumbnails."""
    return DerivationFailed(
        stage="media", operation="thumbnail",
        reason=f"{fs.library_id}:{fs.path}: cannot decode: {why}",
        input_subject=f"photos.content.{content_hash}.HashComputed", content_hash=content_hash,
        file_id=fs.file_id, library_id=fs.library_id,
    )  # fmt: skip


# 64-bit perceptual hashes, as imagehash writes them (16 hex digits).
PHASH_1 = "ff00ff00ff00ff00"
DHASH_1 = "00ff00ff00ff00ff"


class ReadModel:
    """Builds read-model generations in a directory the way the projector does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.events: list[Event] = []

    def add(self, *events: Event) -> ReadModel:
        self.events.extend(events)
        return self

    def publish(self) -> Path:
        """A new generation holding every event added so far, swapped in as current."""
        path = readmodel.new_generation(self.directory)
        conn = readmodel.open_writer(path)
        try:
            apply_batch(
                conn,
                [
                    RawEvent(i, ev.subject(), encode(ev), headers_for(ev))
                    for i, ev in enumerate(self.events, start=1)
                ],
            )
        finally:
            conn.close()
        readmodel.swap(self.directory, path)
        return path


# The small library set most tests use.
A_IMG1 = seen("alpha", "2023/img1.jpg", size=1000, mtime_s=1_700_000_300)
A_IMG2 = seen("alpha", "2023/img2.jpg", size=2000, mtime_s=1_700_000_100)
A_VID = seen("alpha", "2024/clip.mp4", size=5000, mtime_s=1_700_000_200, kind="video")
A_PNG = seen("alpha", "2024/sub/x.png", size=300, mtime_s=1_700_000_400)
A_GONE = seen("alpha", "other/gone.jpg", size=50)
B_IMG1 = seen("beta", "dup/img1.jpg", size=1000, mtime_s=1_600_000_000)
B_IMG1B = seen("beta", "dup2/img1.jpg", size=1000, mtime_s=1_600_000_001)
B_VID = seen("beta", "copy.mp4", size=5000, mtime_s=1_600_000_002, kind="video")


def small_events() -> list[Event]:
    return [
        online("alpha"),
        online("beta"),
        stale("beta", "root is empty"),
        A_IMG1, A_IMG2, A_VID, A_PNG, A_GONE, B_IMG1, B_IMG1B, B_VID,
        hashed(A_IMG1, h(1)),
        thumbnailed(h(1), width=640, height=480, phash=PHASH_1, dhash=DHASH_1),
        hashed(B_IMG1, h(1)),
        hashed(B_IMG1B, h(1)),
        hashed(A_VID, h(2)),
        hashed(B_VID, h(2)),
        hashed(A_IMG2, h(3)),
        undecodable(A_IMG2, h(3), "truncated"),
        hashed(A_GONE, h(4)),
        missing(A_GONE),
        failed("hash", 1),
        failed("hash", 2),
        failed("thumbs", 3),
    ]  # fmt: skip


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", nats_url=None, api_token=None)


@pytest.fixture
def model(settings: Settings) -> ReadModel:
    return ReadModel(settings.readmodel_dir)


@pytest.fixture
def small(model: ReadModel) -> ReadModel:
    model.add(*small_events()).publish()
    return model


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedNats(tmp_path / "nats")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


@contextlib.contextmanager
def client_for(settings: Settings, **roots: Path) -> Iterator[TestClient[Any]]:
    """A client of an API with these libraries configured (id=root): the only roots it reads
    originals from (a root named by a LibraryOnline in the log is never used)."""
    libs = [Library(id=lib_id, name=lib_id, root=root) for lib_id, root in roots.items()]
    app = create_app(settings, libraries=libs, originals=SandboxDecoder(settings))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c
