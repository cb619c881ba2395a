"""The thumbnail store's layout (issue 18): ``<hash[:2]>/<hash>-<size>.jpg``, one file
when both sizes are the same pixels, and the two exact path shapes that are accepted."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from eventsvc.core.thumb_layout import legacy_thumb_rel, parse_thumb_rel, thumb_rel
from eventsvc.derive.media import analyse_image
from eventsvc.media.sandbox import DecodeLimits, DecodeSandbox
from eventsvc.media.thumbs import SIZES, render_thumbnails, thumb_path

DIGEST = "ab" + "0123456789abcdef" * 3 + "0123456789abcd"


def photo(path: Path, size: tuple[int, int]) -> Path:
    img = Image.radial_gradient("L").resize(size).convert("RGB")
    img.save(path, "JPEG", quality=90)
    return path


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def dirs_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir())


def test_shapes_written_and_accepted() -> None:
    assert len(DIGEST) == 64
    assert thumb_rel(DIGEST, "small") == f"ab/{DIGEST}-small.jpg"
    assert legacy_thumb_rel(DIGEST, "large") == f"ab/{DIGEST}/large.jpg"
    assert thumb_path("/t", DIGEST, "large") == Path(f"/t/ab/{DIGEST}-large.jpg")
    for size in SIZES:
        assert parse_thumb_rel(thumb_rel(DIGEST, size)) == (DIGEST, size)
        assert parse_thumb_rel(legacy_thumb_rel(DIGEST, size)) == (DIGEST, size)


@pytest.mark.parametrize(
    "rel",
    [
        f"cd/{DIGEST}-small.jpg",  # shard is not the hash's
        f"AB/{DIGEST.upper()}-small.jpg",
        f"ab/{DIGEST}-huge.jpg",
        f"ab/{DIGEST}-small.webp",
        f"ab/{DIGEST}-small.jpg\n",
        f"/ab/{DIGEST}-small.jpg",
        f"./ab/{DIGEST}-small.jpg",
        f"ab/../ab/{DIGEST}-small.jpg",
        f"ab/{DIGEST}/small.jpg/x",
        f"ab/{DIGEST}/x/small.jpg",
        f"ab/{DIGEST[:-1]}-small.jpg",
        f"faces/ab/{DIGEST}.jpg",
        "../../secret.jpg",
        "ln/link.jpg",
        "",
    ],
)
def test_other_shapes_refused(rel: str) -> None:
    assert parse_thumb_rel(rel) is None


def test_bad_names_cannot_be_written() -> None:
    for bad_hash in ("", "ab", "../etc", DIGEST.upper(), DIGEST + "0", DIGEST[:-1] + "/"):
        with pytest.raises(ValueError):
            thumb_rel(bad_hash, "small")
    for bad_size in ("../large", "x", "small.jpg", ""):
        with pytest.raises(ValueError):
            thumb_path("/t", DIGEST, bad_size)


def test_render_shares_one_encode_when_the_pixels_are_the_same() -> None:
    tiny = render_thumbnails(Image.new("RGB", (200, 120), (10, 200, 30)))
    assert tiny["small"] is tiny["large"]
    mid = render_thumbnails(Image.new("RGB", (600, 400), (10, 200, 30)))
    assert mid["small"] != mid["large"]
    with Image.open(io.BytesIO(mid["large"])) as im:  # under 1440: at its own size
        assert im.size == (600, 400)
    with Image.open(io.BytesIO(mid["small"])) as im:
        assert im.size == (256, 171)


@pytest.mark.parametrize("sandboxed", [False, True])
def test_one_file_for_a_small_image_two_for_a_larger_one(tmp_path: Path, sandboxed: bool) -> None:
    root = tmp_path / "thumbs"
    small_src = photo(tmp_path / "s.jpg", (240, 160))
    big_src = photo(tmp_path / "b.jpg", (2000, 1500))
    small_hash, big_hash = "ab" + "1" * 62, "ab" + "2" * 62
    box = DecodeSandbox(DecodeLimits(processes=1)) if sandboxed else None
    fds = [os.open(small_src, os.O_RDONLY), os.open(big_src, os.O_RDONLY)]
    try:  # the sandbox's children decode (and encode): the deriver only writes
        sizes, (w, h), _, _ = analyse_image(fds[0], root, small_hash, sandbox=box)
        assert (w, h) == (240, 160)
        assert sizes == {"small": thumb_rel(small_hash, "small"), "large": sizes["small"]}
        big, (w, h), _, _ = analyse_image(fds[1], root, big_hash, sandbox=box)
        assert (w, h) == (2000, 1500)
        assert big == {s: thumb_rel(big_hash, s) for s in ("small", "large")}
    finally:
        for fd in fds:
            os.close(fd)
        if box is not None:
            box.close()
    assert files_under(root) == sorted([sizes["small"], *big.values()])
    assert dirs_under(root) == ["ab"]  # one shard directory, none per content
    with Image.open(root / sizes["large"]) as im:
        assert im.size == (240, 160)
    with Image.open(root / big["large"]) as im:
        assert im.size == (1440, 1080)
    with Image.open(root / big["small"]) as im:
        assert im.size == (256, 192)
