"""What the scanner knows about one library's files, packed (issue 18: memory per file).

A ``dict[bytes, tuple]`` costs about 320 bytes per file in Python objects (the key, the
tuple, its four ints and the file id string); at a million files that is a third of a
gigabyte. :class:`KnownFiles` is the same mapping (raw relative path -> ``Known``) kept
in a few numpy arrays and one bytes blob, about 60 bytes plus the path per file:

- a *base*, sorted by ``hash(path)``: the hashes, the file ids (fixed-width ASCII),
  size, mtime_ns and seq (flat ``array('q')``s), each path's offset into the blob and whether
  the entry is still there (a removal clears that flag, an update writes in place);
- an *overlay* dict for paths the base does not hold (new files since the last packing).

A lookup goes to the hash's bucket (its top bits index ``starts``: about one entry
each) and compares the path with the blob (a hash collision costs a step, never a
wrong answer).
:meth:`pack` folds the overlay into a new base; the scanner calls it after each walk
(never during one: the walking thread reads while the event loop writes). Python's
``hash`` of bytes is salted per process, which is fine: the state is rebuilt from the log
at every start.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, MutableMapping
from typing import NamedTuple

import numpy as np

__all__ = ["Columns", "Known", "KnownFiles"]

Known = tuple[str, int, int, int]
"""(file_id, size, mtime_ns, seq of the last event about this file)."""

_PACK_MIN = 4096
"""Overlay entries below which :meth:`KnownFiles.maybe_pack` leaves the overlay alone."""


class _Base(NamedTuple):
    """Flat arrays (``array('q')``: indexing gives a Python int at C speed, bisect works)."""

    hashes: array[int]  # hash(path) as unsigned 64 bits ('Q'), sorted
    starts: array[int]  # 2**bits + 1: hashes with top bits k are at starts[k]:starts[k + 1]
    shift: int  # 64 - bits
    fids: bytearray  # fixed-width ASCII file ids, ``width`` bytes each
    width: int
    size: array[int]
    mtime: array[int]
    seq: array[int]
    offsets: array[int]  # n + 1: path i is blob[offsets[i]:offsets[i + 1]]
    alive: bytearray  # 1: present, 0: removed
    blob: bytes


def _q(values: np.ndarray | list[int] | None = None) -> array[int]:
    out = array("q")
    if isinstance(values, np.ndarray):
        out.frombytes(values.astype(np.int64, copy=False).tobytes())
    elif values:
        out.extend(values)
    return out


_MASK = (1 << 64) - 1
_path_hash = hash
"""How a path is hashed (a test narrows it to force collisions)."""


def _empty_base() -> _Base:
    no = bytearray
    return _Base(array("Q"), _q([0, 0]), 64, no(), 1, _q(), _q(), _q(), _q([0]), no(), b"")


class Columns(NamedTuple):
    """What :class:`KnownFiles` packs, column by column (no tuple per file)."""

    rels: list[bytes]
    fids: list[str]
    sizes: list[int]
    mtimes: list[int]
    seqs: list[int]

    @classmethod
    def empty(cls) -> Columns:
        return cls([], [], [], [], [])

    def append(self, rel: bytes, fid: str, size: int, mtime_ns: int, seq: int) -> None:
        self.rels.append(rel)
        self.fids.append(fid)
        self.sizes.append(size)
        self.mtimes.append(mtime_ns)
        self.seqs.append(seq)


def _build(items: Iterable[tuple[bytes, Known]]) -> _Base:
    cols = Columns.empty()
    for rel, (fid, size, mtime, seq) in items:
        cols.append(rel, fid, size, mtime, seq)
    return _pack(cols)


def _pack(cols: Columns) -> _Base:
    rels, fids = cols.rels, cols.fids
    n = len(rels)
    if not n:
        return _empty_base()
    sizes = np.array(cols.sizes, np.int64)
    mtimes = np.array(cols.mtimes, np.int64)
    seqs = np.array(cols.seqs, np.int64)
    # hash() is a signed 64-bit int; its two's complement bits are the unsigned key
    hashes = np.fromiter(map(_path_hash, rels), np.int64, n).view(np.uint64)
    order = np.argsort(hashes, kind="stable")
    hashes = hashes[order]
    bits = max(1, n.bit_length())  # about one entry per bucket
    shift = 64 - bits
    starts = np.searchsorted(
        hashes >> np.uint64(shift), np.arange((1 << bits) + 1, dtype=np.uint64), side="left"
    )
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(map(len, rels), np.int64, n)[order], out=offsets[1:])
    idx = order.tolist()
    blob = b"".join(map(rels.__getitem__, idx))
    width = max(map(len, fids))
    if min(map(len, fids)) == width:  # the usual case: one width, one encode
        rows = np.frombuffer("".join(fids).encode("ascii"), np.uint8).reshape(n, width)
        fid_blob = bytearray(rows[order].tobytes())
    else:
        fid_blob = bytearray(b"".join(fids[i].encode("ascii").ljust(width, b"\0") for i in idx))
    sorted_hashes = array("Q")
    sorted_hashes.frombytes(hashes.tobytes())
    return _Base(
        sorted_hashes,
        _q(starts),
        shift,
        fid_blob,
        max(1, width),
        _q(sizes[order]),
        _q(mtimes[order]),
        _q(seqs[order]),
        _q(offsets),
        bytearray(b"\1") * n,
        blob,
    )


class KnownFiles(MutableMapping[bytes, Known]):
    """Raw relative path -> :data:`Known`, packed (see the module docstring)."""

    __slots__ = ("_base", "_dead", "_new")

    def __init__(self, items: Iterable[tuple[bytes, Known]] | None = None) -> None:
        self._base = _build(items) if items is not None else _empty_base()
        self._new: dict[bytes, Known] = {}
        self._dead = 0
        """Base entries removed (their flag cleared)."""

    @classmethod
    def from_columns(cls, cols: Columns) -> KnownFiles:
        """Packed from columns (a start-up load: no tuple per file); ``cols`` is emptied
        as it is packed."""
        k = cls()
        k._base = _pack(cols)
        for col in cols:
            col.clear()
        return k

    # ------------------------------------------------------------ lookups

    def _find(self, rel: bytes) -> int:
        """The base index holding ``rel`` (alive or not), or -1."""
        b = self._base
        h = _path_hash(rel) & _MASK
        k = h >> b.shift
        starts, hashes, off, blob = b.starts, b.hashes, b.offsets, b.blob
        for i in range(starts[k], starts[k + 1]):
            if hashes[i] == h:
                o = off[i]
                if off[i + 1] - o == len(rel) and blob.startswith(rel, o):
                    return i
        return -1

    def _entry(self, i: int) -> Known:
        b = self._base
        w = b.width
        fid = b.fids[i * w : (i + 1) * w].rstrip(b"\0").decode("ascii")
        return (fid, b.size[i], b.mtime[i], b.seq[i])

    def __getitem__(self, rel: bytes) -> Known:
        i = self._find(rel)
        if i >= 0 and self._base.alive[i]:
            return self._entry(i)
        return self._new[rel]

    def get(self, rel: bytes, default: Known | None = None) -> Known | None:  # type: ignore[override]
        i = self._find(rel)
        if i >= 0 and self._base.alive[i]:
            return self._entry(i)
        return self._new.get(rel, default)

    def unchanged(self, rel: bytes, size: int, mtime_ns: int) -> bool:
        """Whether ``rel`` is known with this size and mtime (a walk's common case, once
        per file: inlined :meth:`_find`, no tuple, no file id string, no path slice)."""
        b = self._base
        h = _path_hash(rel) & _MASK
        k = h >> b.shift
        hashes, off = b.hashes, b.offsets
        for i in range(b.starts[k], b.starts[k + 1]):
            if hashes[i] == h:
                o = off[i]
                if off[i + 1] - o == len(rel) and b.blob.startswith(rel, o):
                    if b.alive[i]:
                        return b.size[i] == size and b.mtime[i] == mtime_ns
                    break
        known = self._new.get(rel)
        return known is not None and known[1] == size and known[2] == mtime_ns

    def __contains__(self, rel: object) -> bool:
        if not isinstance(rel, bytes):
            return False
        i = self._find(rel)
        return (i >= 0 and bool(self._base.alive[i])) or rel in self._new

    def __len__(self) -> int:
        return len(self._base.hashes) - self._dead + len(self._new)

    def __iter__(self) -> Iterator[bytes]:
        b = self._base
        off, blob, alive = b.offsets, b.blob, b.alive
        for i in range(len(alive)):
            if alive[i]:
                yield blob[off[i] : off[i + 1]]
        yield from list(self._new)

    # ------------------------------------------------------------ changes

    def __setitem__(self, rel: bytes, known: Known) -> None:
        fid, size, mtime, seq = known
        i = self._find(rel)
        if i >= 0:
            b = self._base
            enc = fid.encode("ascii")
            w = b.width
            if len(enc) <= w and b"\0" not in enc:
                b.fids[i * w : (i + 1) * w] = enc.ljust(w, b"\0")
                b.size[i], b.mtime[i], b.seq[i] = size, mtime, seq
                if not b.alive[i]:
                    b.alive[i] = 1
                    self._dead -= 1
                return
            if b.alive[i]:  # a file id wider than the packed ones: kept in the overlay
                b.alive[i] = 0
                self._dead += 1
        self._new[rel] = (fid, size, mtime, seq)

    def __delitem__(self, rel: bytes) -> None:
        i = self._find(rel)
        if i >= 0 and self._base.alive[i]:
            self._base.alive[i] = 0
            self._dead += 1
            return
        del self._new[rel]

    def clear(self) -> None:
        self._base, self._new, self._dead = _empty_base(), {}, 0

    def pack(self) -> None:
        """Fold the overlay and the removals into a new base."""
        if self._new or self._dead:
            self._base = _build(list(self.items()))
            self._new, self._dead = {}, 0

    def maybe_pack(self) -> None:
        """:meth:`pack` when the overlay or the removals have grown past a quarter of the
        base (or :data:`_PACK_MIN`): amortised O(1) per change."""
        limit = max(_PACK_MIN, len(self._base.hashes) // 4)
        if len(self._new) > limit or self._dead > limit:
            self.pack()

    def items(self) -> Iterator[tuple[bytes, Known]]:  # type: ignore[override]
        b = self._base
        off, blob, alive, fids, w = b.offsets, b.blob, b.alive, b.fids, b.width
        size, mtime, seq = b.size, b.mtime, b.seq
        for i in range(len(alive)):
            if alive[i]:
                fid = fids[i * w : (i + 1) * w].rstrip(b"\0").decode("ascii")
                yield blob[off[i] : off[i + 1]], (fid, size[i], mtime[i], seq[i])
        yield from list(self._new.items())

    def values(self) -> Iterator[Known]:  # type: ignore[override]
        for _, k in self.items():
            yield k

    def nbytes(self) -> int:
        """Bytes held by the packed base (the overlay not counted)."""
        b = self._base
        arrays = (b.hashes, b.size, b.mtime, b.seq, b.offsets)
        return sum(a.itemsize * len(a) for a in arrays) + len(b.fids) + len(b.alive) + len(b.blob)

    def __repr__(self) -> str:
        return f"KnownFiles({len(self)} files, {len(self._new)} unpacked)"
