"""Near-duplicate search over 64-bit perceptual hashes, by multi-index hashing.

Pure functions, no I/O: hex hashes in, index pairs (with Hamming distances) out.

Two 64-bit hashes within Hamming distance ``d`` agree exactly on at least one of
``d + 1`` disjoint bit blocks (pigeonhole: ``d`` differing bits touch at most ``d``
blocks). So :func:`near_pairs` buckets the hashes by each block's value (one
``argsort`` per block), takes the pairs inside each bucket as candidates, and keeps
those whose popcount(XOR) is at most ``d``. A pair is emitted from the first block it
agrees on only, so nothing needs deduplicating. For random hashes the candidates are
about ``(d + 1) * n**2 / 2**(64 / (d + 1) + 1)`` instead of ``n**2 / 2``; when the
buckets are so coarse (large ``d``) or so full (heavily clustered hashes) that the
candidates would approach the number of all pairs, it switches to a chunked brute force.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "MAX_DISTANCE",
    "Pairs",
    "blocks",
    "brute_force_pairs",
    "components",
    "hamming",
    "near_pairs",
    "popcount64",
    "popcount64_lut",
    "to_uint64",
]

BITS = 64
MAX_DISTANCE = BITS - 1
"""At most 64 blocks of at least one bit each."""
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_BRUTE_CHUNK = 1 << 22
"""Elements of the XOR matrix computed at once by the brute force (32 MiB of uint64)."""
_BRUTE_RATIO = 0.5
"""Brute force once the candidates exceed this share of all pairs: a candidate (random
gathers) costs about twice a brute-force comparison (contiguous rows)."""


class Pairs(NamedTuple):
    """Index pairs ``i < j`` into the input, sorted by (i, j), with their distances."""

    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.i.size)

    def as_tuples(self) -> list[tuple[int, int, int]]:
        return list(zip(self.i.tolist(), self.j.tolist(), self.distance.tolist(), strict=True))


def _empty() -> Pairs:
    return Pairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8))


# ----------------------------------------------------------------------------- bits

_LUT16 = np.array([bin(v).count("1") for v in range(1 << 16)], dtype=np.uint8)


def popcount64_lut(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64, as uint8, with a 16-bit lookup table (numpy 1.x)."""
    x = np.asarray(x, dtype=np.uint64)
    out = np.zeros(x.shape, dtype=np.uint8)
    for shift in (0, 16, 32, 48):
        out += _LUT16[((x >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.intp)]
    return out


if hasattr(np, "bitwise_count"):  # numpy >= 2

    def popcount64(x: np.ndarray) -> np.ndarray:
        """Set bits of each uint64, as uint8."""
        return np.bitwise_count(np.asarray(x, dtype=np.uint64)).astype(np.uint8, copy=False)

else:  # pragma: no cover - numpy 1.x
    popcount64 = popcount64_lut


def to_uint64(hashes: Sequence[str] | np.ndarray) -> np.ndarray:
    """16-hex-digit hashes (imagehash's ``str()`` of an 8x8 hash) as uint64.

    Raises ValueError naming the first malformed one.
    """
    if isinstance(hashes, np.ndarray):
        if hashes.dtype != np.uint64:
            raise ValueError(f"expected a uint64 array, got {hashes.dtype}")
        return hashes
    for k, h in enumerate(hashes):
        if not (isinstance(h, str) and _HEX16.fullmatch(h)):
            raise ValueError(f"hash #{k} is not 16 hex digits: {h!r}")
    if not hashes:
        return np.empty(0, dtype=np.uint64)
    raw = bytes.fromhex("".join(hashes))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def hamming(a: str, b: str) -> int:
    """Hamming distance between two 16-hex-digit hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def blocks(max_distance: int) -> list[tuple[int, int]]:
    """The ``max_distance + 1`` disjoint (shift, width) bit blocks covering 64 bits."""
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"max_distance must be within 0..{MAX_DISTANCE}, not {max_distance}")
    m = max_distance + 1
    base, extra = divmod(BITS, m)
    out, shift = [], 0
    for k in range(m):
        width = base + (1 if k < extra else 0)
        out.append((shift, width))
        shift += width
    return out


def _mask(shift: int, width: int) -> np.uint64:
    return np.uint64(((1 << width) - 1) << shift)


# ----------------------------------------------------------------------------- search


def _finish(parts_i: list[np.ndarray], parts_j: list[np.ndarray],
            parts_d: list[np.ndarray]) -> Pairs:  # fmt: skip
    if not parts_i:
        return _empty()
    i = np.concatenate(parts_i).astype(np.int64, copy=False)
    j = np.concatenate(parts_j).astype(np.int64, copy=False)
    d = np.concatenate(parts_d).astype(np.uint8, copy=False)
    order = np.lexsort((j, i))
    return Pairs(i[order], j[order], d[order])


def brute_force_pairs(hashes: Sequence[str] | np.ndarray, max_distance: int) -> Pairs:
    """Every pair within ``max_distance``, by comparing all pairs (chunked, vectorised)."""
    v = to_uint64(hashes)
    n = v.size
    parts_i: list[np.ndarray] = []
    parts_j: list[np.ndarray] = []
    parts_d: list[np.ndarray] = []
    start = 0
    while start < n - 1:
        stop = min(n, start + max(1, _BRUTE_CHUNK // (n - start)))
        d = popcount64(v[start:stop, None] ^ v[None, start:])  # rows x columns from start
        r, c = np.nonzero(d <= max_distance)
        keep = c > r
        r, c = r[keep], c[keep]
        parts_i.append(r + start)
        parts_j.append(c + start)
        parts_d.append(d[r, c])
        start = stop
    return _finish(parts_i, parts_j, parts_d)


def _bucket_runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, end): ``keys[order]`` is sorted; ``end[p]`` is where p's run of equal keys ends."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    n = sk.size
    cuts = np.flatnonzero(sk[1:] != sk[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [n]))
    return order, np.repeat(ends, ends - starts)


def _candidates(
    v: np.ndarray, max_distance: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(block, sorted values, order, p, q): positions p < q in ``v[order]`` whose values
    agree exactly on that block (the same bucket), yielded in steps q - p = 1, 2, ..."""
    n = v.size
    positions = np.arange(n)
    for b, (shift, width) in enumerate(blocks(max_distance)):
        keys = (v >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order, end = _bucket_runs(keys)
        sv = v[order]
        active = positions[end - positions > 1]
        step = 1
        while active.size:
            yield b, sv, order, active, active + step
            step += 1
            active = active[end[active] - active > step]


def _candidate_count(v: np.ndarray, max_distance: int) -> int:
    total = 0
    for shift, width in blocks(max_distance):
        keys = (v >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        counts = np.unique(keys, return_counts=True)[1].astype(np.int64)
        total += int((counts * (counts - 1) // 2).sum())
    return total


def near_pairs(hashes: Sequence[str] | np.ndarray, max_distance: int) -> Pairs:
    """Every pair of hashes within Hamming distance ``max_distance`` (0..63).

    Multi-index hashing over ``max_distance + 1`` blocks; the same answer as
    :func:`brute_force_pairs`, which it falls back to when the block buckets would give
    more than half as many candidates as there are pairs.
    """
    v = to_uint64(hashes)
    n = v.size
    if n < 2:
        blocks(max_distance)  # still validate
        return _empty()
    if _candidate_count(v, max_distance) >= _BRUTE_RATIO * (n * (n - 1) // 2):
        return brute_force_pairs(v, max_distance)
    masks = [_mask(s, w) for s, w in blocks(max_distance)]
    parts_i: list[np.ndarray] = []
    parts_j: list[np.ndarray] = []
    parts_d: list[np.ndarray] = []
    zero = np.uint64(0)
    for b, sv, order, p, q in _candidates(v, max_distance):
        x = sv[p] ^ sv[q]
        d = popcount64(x)
        hit = np.flatnonzero(d <= max_distance)
        if not hit.size:
            continue
        # Emit each pair from the first block it agrees on, so no pair comes twice.
        xs = x[hit]
        first = np.ones(hit.size, dtype=bool)
        for earlier in masks[:b]:
            first &= (xs & earlier) != zero
        hit = hit[first]
        a, c = order[p[hit]], order[q[hit]]
        parts_i.append(np.minimum(a, c))
        parts_j.append(np.maximum(a, c))
        parts_d.append(d[hit])
    return _finish(parts_i, parts_j, parts_d)


# ----------------------------------------------------------------------------- groups


def components(n: int, i: Sequence[int] | np.ndarray,
               j: Sequence[int] | np.ndarray) -> list[list[int]]:  # fmt: skip
    """Connected components (union-find) of ``n`` nodes under the edges (i, j).

    Only components of two or more nodes, each sorted, ordered by their first node.
    """
    parent = list(range(n))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(np.asarray(i).tolist(), np.asarray(j).tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            if ra < rb:
                parent[rb] = ra
            else:
                parent[ra] = rb
    groups: dict[int, list[int]] = {}
    for x in sorted(set(np.asarray(i).tolist()) | set(np.asarray(j).tolist())):
        groups.setdefault(find(x), []).append(x)  # only nodes on an edge can be grouped
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
