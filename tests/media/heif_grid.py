"""A grid HEIC (like a phone's: the picture is tiles) built from tiles pillow-heif encodes."""

from __future__ import annotations

import io

from PIL import Image

__all__ = ["grid_heic"]


def _box(kind: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def _full(kind: bytes, version: int, payload: bytes, flags: int = 0) -> bytes:
    return _box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def _u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def _tile(img: Image.Image) -> tuple[bytes, bytes]:
    """(hvcC box, coded data) of one tile encoded alone by pillow-heif."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    img.save(buf, "HEIF", quality=80)
    data = buf.getvalue()
    at = data.index(b"hvcC") - 4
    hvcc = data[at : at + int.from_bytes(data[at : at + 4], "big")]
    mdat = data.index(b"mdat") - 4
    size = int.from_bytes(data[mdat : mdat + 4], "big")
    return hvcc, data[mdat + 8 : mdat + size]


def grid_heic(img: Image.Image, columns: int = 2) -> bytes:
    """``img`` as a HEIC whose primary item is a 1 x ``columns`` grid of HEVC tiles."""
    w, h = img.size
    tw = w // columns
    tiles = [_tile(img.crop((i * tw, 0, (i + 1) * tw, h))) for i in range(columns)]
    hvcc = tiles[0][0]
    ids = list(range(2, 2 + columns))
    ftyp = _box(b"ftyp", b"heic" + _u32(0) + b"mif1heic")
    hdlr = _full(b"hdlr", 0, _u32(0) + b"pict" + b"\0" * 12 + b"\0")
    pitm = _full(b"pitm", 0, _u16(1))
    infe = [_full(b"infe", 2, _u16(1) + _u16(0) + b"grid" + b"\0")]
    infe += [_full(b"infe", 2, _u16(i) + _u16(0) + b"hvc1" + b"\0", flags=1) for i in ids]
    iinf = _full(b"iinf", 0, _u16(len(infe)) + b"".join(infe))
    iref = _full(b"iref", 0, _box(b"dimg", _u16(1) + _u16(columns) + b"".join(map(_u16, ids))))
    ispe_tile = _full(b"ispe", 0, _u32(tw) + _u32(h))
    ispe_grid = _full(b"ispe", 0, _u32(tw * columns) + _u32(h))
    ipco = _box(b"ipco", hvcc + ispe_tile + ispe_grid)  # property indexes 1, 2, 3
    assoc = [_u16(1) + bytes([1, 3])] + [_u16(i) + bytes([2, 0x81, 2]) for i in ids]
    ipma = _full(b"ipma", 0, _u32(len(assoc)) + b"".join(assoc))
    iprp = _box(b"iprp", ipco + ipma)
    grid = bytes([0, 0, 0, columns - 1]) + _u16(tw * columns) + _u16(h)
    idat = _box(b"idat", grid)

    def build(mdat_at: int) -> bytes:
        entries = [_u16(1) + _u16(1) + _u16(0) + _u16(1) + _u32(0) + _u32(len(grid))]
        offset = mdat_at + 8
        for i, (_, coded) in zip(ids, tiles, strict=True):
            entries.append(_u16(i) + _u16(0) + _u16(0) + _u16(1) + _u32(offset) + _u32(len(coded)))
            offset += len(coded)
        iloc = _full(b"iloc", 1, bytes([0x44, 0x00]) + _u16(len(entries)) + b"".join(entries))
        meta = _full(b"meta", 0, hdlr + pitm + iinf + iref + iprp + idat + iloc)
        return ftyp + meta

    head = build(0)
    head = build(len(head))
    return head + _box(b"mdat", b"".join(coded for _, coded in tiles))
