"""projections.near: multi-index hashing gives exactly the brute-force pairs."""

from __future__ import annotations

import numpy as np
import pytest

from projections import near


def hexes(values: np.ndarray) -> list[str]:
    return [f"{x:016x}" for x in values.tolist()]


def random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)


def clustered_hashes(rng: np.random.Generator, centres: int, per: int, flips: int) -> np.ndarray:
    """Clusters: each centre and ``per`` variants with up to ``flips`` random bits flipped."""
    out = []
    for c in random_hashes(rng, centres).tolist():
        out.append(c)
        for _ in range(per):
            x = c
            for bit in rng.choice(64, int(rng.integers(0, flips + 1)), replace=False):
                x ^= 1 << int(bit)
            out.append(x)
    return np.array(out, dtype=np.uint64)


def naive(hashes: list[str], d: int) -> list[tuple[int, int, int]]:
    """The definition, in plain Python."""
    ints = [int(h, 16) for h in hashes]
    return [
        (i, j, (ints[i] ^ ints[j]).bit_count())
        for i in range(len(ints))
        for j in range(i + 1, len(ints))
        if (ints[i] ^ ints[j]).bit_count() <= d
    ]


@pytest.mark.parametrize("d", [0, 3, 6, 10])
def test_near_pairs_equal_brute_force(d: int) -> None:
    rng = np.random.default_rng(d)
    values = np.concatenate(
        [
            random_hashes(rng, 400),
            clustered_hashes(rng, 40, 6, flips=d + 3),  # pairs on both sides of d
            clustered_hashes(rng, 3, 30, flips=2),  # a few dense clusters
        ]
    )
    values = np.concatenate([values, values[:15]])  # exact repeats
    rng.shuffle(values)
    hashes = hexes(values)
    n = values.size
    # The multi-index path, not the brute-force fallback, is what is tested here.
    assert near._candidate_count(values, d) < near._BRUTE_RATIO * n * (n - 1) / 2
    got = near.near_pairs(hashes, d)
    expected = near.brute_force_pairs(hashes, d)
    assert got.as_tuples() == expected.as_tuples()
    assert len(got) > 15  # the clusters and repeats gave pairs
    assert got.as_tuples() == naive(hashes, d)


def test_brute_force_fallback_and_large_distances() -> None:
    rng = np.random.default_rng(7)
    hashes = hexes(np.concatenate([random_hashes(rng, 120), clustered_hashes(rng, 5, 10, 20)]))
    for d in (16, 24, 40, 63):  # coarse blocks: near_pairs takes the brute-force path
        assert near.near_pairs(hashes, d).as_tuples() == naive(hashes, d)
    # All identical: every bucket is full, so the brute force is cheaper too.
    same = ["8f3a00ff12345678"] * 50
    pairs = near.near_pairs(same, 6)
    assert len(pairs) == 50 * 49 // 2 and set(pairs.distance.tolist()) == {0}


def test_edge_cases_and_validation() -> None:
    assert len(near.near_pairs([], 6)) == 0
    assert len(near.near_pairs(["0" * 16], 6)) == 0
    assert near.near_pairs(["0" * 16, "0" * 15 + "7"], 3).as_tuples() == [(0, 1, 3)]
    assert near.near_pairs(["0" * 16, "0" * 15 + "7"], 2).as_tuples() == []
    assert near.near_pairs(["ffffffffffffffff", "FFFFFFFFFFFFFFFF"], 0).as_tuples() == [(0, 1, 0)]
    with pytest.raises(ValueError, match="#1"):
        near.near_pairs(["0" * 16, "xyz"], 6)
    with pytest.raises(ValueError, match="16 hex"):
        near.to_uint64(["0" * 64])
    for bad in (-1, 64):
        with pytest.raises(ValueError, match="max_distance"):
            near.near_pairs(["0" * 16, "1" * 16], bad)
    for d in (0, 1, 6, 16, 63):
        bl = near.blocks(d)
        assert len(bl) == d + 1 and sum(w for _, w in bl) == 64
        assert [s for s, _ in bl] == [sum(w for _, w in bl[:k]) for k in range(len(bl))]
    assert near.hamming("00000000000000ff", "000000000000000f") == 4


def test_popcount_lookup_table_matches() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([random_hashes(rng, 1000), np.array([0, 2**64 - 1], dtype=np.uint64)])
    expected = [bin(v).count("1") for v in x.tolist()]
    assert near.popcount64(x).tolist() == expected
    assert near.popcount64_lut(x).tolist() == expected


def test_components_union_find() -> None:
    assert near.components(6, [0, 1, 4], [1, 3, 5]) == [[0, 1, 3], [4, 5]]
    assert near.components(3, [], []) == []
    assert near.components(5, [3, 2, 1], [4, 3, 2]) == [[1, 2, 3, 4]]
