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


class HashKeys:
    """Append-only map between row numbers (0, 1, ...) and keys."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, f"S{WIDTH}")  # sorted
        self.perm = np.zeros(0, np.int32)  # row of keys[i]
        self.inv = np.zeros(0, np.int32)  # i of row (rows < merged)
        self.merged = 0  # rows 0..merged-1 are in the sorted arrays
        self.tail: dict[bytes, int] = {}
        self.tail_keys: list[bytes] = []

    def __len__(self) -> int:
        return self.merged + len(self.tail_keys)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.perm.nbytes + self.inv.nbytes + len(self.tail) * 150

    def append(self, h: str) -> int:
        k = encode_key(h)
        row = len(self)
        self.tail[k] = row
        self.tail_keys.append(k)
        if len(self.tail_keys) >= max(4096, self.merged // 8):
            self.merge()
        return row

    def merge(self) -> None:
        if not self.tail_keys:
            return
        new = np.array(self.tail_keys, f"S{WIDTH}")
        rows = np.arange(self.merged, self.merged + len(new), dtype=np.int32)
        order = np.argsort(new, kind="stable")
        new, rows = new[order], rows[order]
        at = np.searchsorted(self.keys, new)
        self.keys = np.insert(self.keys, at, new)
        self.perm = np.insert(self.perm, at, rows)
        self.merged += len(new)
        self.inv = np.empty(self.merged, np.int32)
        self.inv[self.perm] = np.arange(self.merged, dtype=np.int32)
        self.tail.clear()
        self.tail_keys.clear()

    def row(self, h: str) -> int | None:
        try:
            k = encode_key(h)
        except ValueError:
            return None
        got = self.tail.get(k)
        if got is not None:
            return got
        i = int(np.searchsorted(self.keys, k))
        if i < len(self.keys) and bytes(self.keys[i]) == k.rstrip(b"\0"):
            return int(self.perm[i])
        return None

    def rows(self, hashes: Iterable[str]) -> np.ndarray:
        """Rows of the given keys that are present (int64, in no particular order)."""
        ks = []
        for h in hashes:
            try:
                ks.append(encode_key(h))
            except ValueError:
                continue
        out: list[np.ndarray] = []
        if self.tail:
            out.append(np.fromiter((self.tail[k] for k in ks if k in self.tail), np.int64))
        if ks and len(self.keys):
            arr = np.array(ks, f"S{WIDTH}")
            i = np.minimum(np.searchsorted(self.keys, arr), len(self.keys) - 1)
            hit = self.keys[i] == arr
            out.append(self.perm[i[hit]].astype(np.int64))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def key(self, row: int) -> str:
        if row >= self.merged:
            return decode_key(self.tail_keys[row - self.merged])
        return decode_key(bytes(self.keys[self.inv[row]]))

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted keys, their rows) after a merge: what persistence saves."""
        self.merge()
        return self.keys, self.perm

    @classmethod
    def restore(cls, keys: np.ndarray, perm: np.ndarray) -> HashKeys:
        out = cls()
        if len(keys) != len(perm):
            raise ValueError("keys and rows differ in length")
        out.keys = np.ascontiguousarray(keys, f"S{WIDTH}")
        out.perm = np.ascontiguousarray(perm, np.int32)
        out.merged = len(keys)
        out.inv = np.empty(out.merged, np.int32)
        out.inv[out.perm] = np.arange(out.merged, dtype=np.int32)
        return out
