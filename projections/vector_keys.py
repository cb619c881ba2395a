"""Row numbers <-> content hashes for the vector index, in compact arrays.

A dict and a list of Python strings cost ~200 bytes a row (200 MB at 1M rows); this
keeps the keys as 33-byte fixed-width bytes (a tag, then 32 raw bytes for a BLAKE3 hex
hash, or the UTF-8 of any other key up to 32 bytes), sorted, with the row of each
sorted key and the sorted place of each row: ~41 bytes a row. Rows appended since the
last merge sit in a small dict and are merged into the sorted arrays in one pass when
that dict grows (no doubling copies of the whole).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

__all__ = ["HashKeys", "decode_key", "encode_key"]

WIDTH = 33
_HEX = frozenset("0123456789abcdef")


def encode_key(h: str) -> bytes:
    if len(h) == 64 and _HEX.issuperset(h):
        return b"h" + bytes.fromhex(h)
    raw = h.encode()
    if len(raw) > WIDTH - 1 or b"\0" in raw:
        raise ValueError(f"not a content hash: {h[:80]!r}")
    return b"s" + raw


def decode_key(k: bytes) -> str:
    if k[:1] == b"h":
        return k[1:].ljust(WIDTH - 1, b"\0").hex()  # numpy strips trailing NULs
    return k[1:].decode()


class _Snap(NamedTuple):
    keys: np.ndarray  # sorted
    perm: np.ndarray  # row of keys[i]
    inv: np.ndarray  # i of row (rows < merged)
    merged: int  # rows 0..merged-1 are in the sorted arrays
    tail: dict[bytes, int]  # rows appended since: key -> row
    tail_keys: list[bytes]  # ... and row - merged -> key


def _snap(keys: np.ndarray, perm: np.ndarray) -> _Snap:
    inv = np.empty(len(keys), np.int32)
    inv[perm] = np.arange(len(keys), dtype=np.int32)
    return _Snap(keys, perm, inv, len(keys), {}, [])


class HashKeys:
    """Append-only map between row numbers (0, 1, ...) and keys.

    One writer (appends, merges) and any number of reader threads: readers take one
    snapshot tuple; a merge builds the next one aside and swaps it in.
    """

    def __init__(self) -> None:
        self._s = _snap(np.zeros(0, f"S{WIDTH}"), np.zeros(0, np.int32))

    def __len__(self) -> int:
        s = self._s
        return s.merged + len(s.tail_keys)

    @property
    def nbytes(self) -> int:
        s = self._s
        return s.keys.nbytes + s.perm.nbytes + s.inv.nbytes + len(s.tail) * 150

    def append(self, h: str) -> int:
        k = encode_key(h)
        s = self._s
        row = s.merged + len(s.tail_keys)
        s.tail_keys.append(k)
        s.tail[k] = row
        if len(s.tail_keys) >= max(4096, s.merged // 8):
            self.merge()
        return row

    def merge(self) -> None:
        s = self._s
        if not s.tail_keys:
            return
        new = np.array(s.tail_keys, f"S{WIDTH}")
        rows = np.arange(s.merged, s.merged + len(new), dtype=np.int32)
        order = np.argsort(new, kind="stable")
        new, rows = new[order], rows[order]
        at = np.searchsorted(s.keys, new)
        self._s = _snap(np.insert(s.keys, at, new), np.insert(s.perm, at, rows))

    def row(self, h: str) -> int | None:
        try:
            k = encode_key(h)
        except ValueError:
            return None
        s = self._s
        got = s.tail.get(k)
        if got is not None:
            return got
        i = int(np.searchsorted(s.keys, k))
        if i < len(s.keys) and bytes(s.keys[i]) == k.rstrip(b"\0"):
            return int(s.perm[i])
        return None

    def rows(self, hashes: Iterable[str]) -> np.ndarray:
        """Rows of the given keys that are present (int64, in no particular order)."""
        ks = []
        for h in hashes:
            try:
                ks.append(encode_key(h))
            except ValueError:
                continue
        s = self._s
        out: list[np.ndarray] = []
        if s.tail:
            out.append(np.fromiter((s.tail[k] for k in ks if k in s.tail), np.int64))
        if ks and len(s.keys):
            arr = np.array(ks, f"S{WIDTH}")
            i = np.minimum(np.searchsorted(s.keys, arr), len(s.keys) - 1)
            hit = s.keys[i] == arr
            out.append(s.perm[i[hit]].astype(np.int64))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def key(self, row: int) -> str:
        s = self._s
        if row >= s.merged:
            return decode_key(s.tail_keys[row - s.merged])
        return decode_key(bytes(s.keys[s.inv[row]]))

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted keys, their rows) after a merge: what persistence saves."""
        self.merge()
        return self._s.keys, self._s.perm

    @classmethod
    def restore(cls, keys: np.ndarray, perm: np.ndarray) -> HashKeys:
        if len(keys) != len(perm):
            raise ValueError("keys and rows differ in length")
        if len(perm) and (perm.min() < 0 or perm.max() >= len(perm)):
            raise ValueError("rows out of range")
        out = cls()
        out._s = _snap(
            np.ascontiguousarray(keys, f"S{WIDTH}"), np.ascontiguousarray(perm, np.int32)
        )
        return out
