"""The vector index of CLIP search at the approximate size, on real SQLite read models:
ranking against exact numpy, filters, pinned rows, re-encodes, the saved copy, rebuilds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from projections import readmodel, vector_file
from projections.vector_keys import HashKeys
from projections.vectors import ModelMatrix, VectorIndex

DIM = 32
V = "tiny-clip"


def _data(n: int, seed: int = 1) -> np.ndarray:
    """Clustered unit vectors (a mixture of 40 gaussians), like CLIP embeddings."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((40, DIM)).astype(np.float32)
    x = centers[rng.integers(0, 40, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _hash(i: int) -> str:
    return f"{(i + 1) * 2654435761 % (1 << 64):016x}" * 4


def _write(path: Path, x: np.ndarray, start: int = 0, seq0: int = 1) -> None:
    conn = readmodel.open_writer(path)
    try:
        conn.executemany(
            "INSERT OR REPLACE INTO clip_vectors (model_version, content_hash, dim, vector, seq)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (V, _hash(start + i), DIM, v.astype("<f4").tobytes(), seq0 + i)
                for i, v in enumerate(x)
            ],
        )
    finally:
        conn.close()


def _library(tmp_path: Path, n: int = 3000) -> tuple[Path, Path, np.ndarray]:
    directory = tmp_path / "readmodel"
    gen = readmodel.ensure_current(directory)
    x = _data(n)
    _write(gen, x)
    return directory, gen, x


def _index(directory: Path, **kw: object) -> VectorIndex:
    return VectorIndex(directory, ann_min=1000, **kw)  # type: ignore[arg-type]


def _model(index: VectorIndex) -> ModelMatrix:
    state = index.sync()
    assert state is not None
    return state.models[V]


def test_hash_keys_map_rows_both_ways() -> None:
    keys = HashKeys()
    names = [_hash(i) for i in range(9000)] + ["a", "b", "00" * 32, "ab" * 31 + "00"]
    for i, h in enumerate(names):
        assert keys.append(h) == i
    for probe in (keys, HashKeys.restore(*keys.state())):
        assert all(probe.row(h) == i for i, h in enumerate(names))
        assert all(probe.key(i) == h for i, h in enumerate(names))
        assert probe.row("c") is None and probe.row(_hash(10**6)) is None
        got = probe.rows([names[5], "a", "nope", names[-1]])
        assert sorted(got.tolist()) == [5, len(names) - 4, len(names) - 1]


def test_large_model_ranks_like_exact_numpy_with_exact_scores(tmp_path: Path) -> None:
    directory, _, x = _library(tmp_path)
    m = _model(_index(directory, persist=False))
    assert m.approximate and m.n == len(x)
    with pytest.raises(RuntimeError):
        _ = m.matrix
    rng = np.random.default_rng(5)
    recall = []
    for q in x[rng.choice(len(x), 20, replace=False)] + 0.05:
        q = q / np.linalg.norm(q)
        hits = VectorIndex.rank(m, q, 10)
        exact = x @ q
        truth = {_hash(int(i)) for i in np.argsort(-exact)[:10]}
        recall.append(len(truth & {h for h, _ in hits}) / 10)
        for h, s in hits:  # scores are the exact cosines (re-ranked from float32)
            assert s == pytest.approx(float(exact[m.rows[h]]), abs=1e-5)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        thr = hits[4][1]
        assert all(s >= thr for _, s in VectorIndex.rank(m, q, 10, threshold=thr))
    assert np.mean(recall) >= 0.98
    assert np.array_equal(m.vector(7), x[7])  # /similar reads the float32 vector


@pytest.mark.parametrize("share", [0.01, 0.10])
def test_filters_keep_recall_and_pinned_rows_hold(tmp_path: Path, share: float) -> None:
    directory, _, x = _library(tmp_path)
    m = _model(_index(directory, persist=False))
    rng = np.random.default_rng(9)
    for q in x[:10]:
        cand = np.sort(rng.choice(len(x), int(len(x) * share), replace=False))
        hits = VectorIndex.rank(m, q, 10, candidates=cand)
        truth = [_hash(int(cand[i])) for i in np.argsort(-(x[cand] @ q))[:10]]
        assert {h for h, _ in hits} == set(truth)
    pinned = VectorIndex.rank(m, x[2999], 20, rows=1500)
    assert len(pinned) == 20 and all(m.rows[h] < 1500 for h, _ in pinned)


def test_reencoded_content_gets_its_new_vector(tmp_path: Path) -> None:
    directory, gen, x = _library(tmp_path)
    index = _index(directory, persist=False)
    m = _model(index)
    new = _data(1, seed=77)
    _write(gen, new, start=12, seq0=10_000)  # content 12 encoded again (INSERT OR REPLACE)
    assert _model(index) is m and m.n == len(x)
    top = VectorIndex.rank(m, new[0], 1)
    assert top[0][0] == _hash(12) and top[0][1] == pytest.approx(1.0, abs=1e-5)
    assert float(new[0] @ x[12]) < 0.5  # so its old vector would have come first here:
    assert _hash(12) not in dict(VectorIndex.rank(m, x[12], 5))


def test_a_restart_loads_the_saved_index_and_reads_only_new_rows(tmp_path: Path) -> None:
    directory, gen, x = _library(tmp_path)
    first = _index(directory, persist_rows=500)
    m1 = _model(first)
    saved = vector_file.file_for(gen)
    assert saved.exists() and first.saves == 1
    _write(gen, _data(10, seed=3), start=len(x), seq0=len(x) + 1)
    again = _index(directory, persist_rows=500)
    m2 = _model(again)
    assert again.loaded_rows == 10 and m2.approximate and m2.n == len(x) + 10
    _model(first)
    for q in x[:5]:
        assert VectorIndex.rank(m1, q, 10) == VectorIndex.rank(m2, q, 10)
    # A damaged file is ignored: the index is built from the read model again.
    saved.write_bytes(saved.read_bytes()[:-100])
    third = _index(directory, persist_rows=10**9)
    assert _model(third).n == len(x) + 10 and third.loaded_rows == len(x) + 10
    # Temporaries and files of vanished generations go at the next save.
    stale = saved.parent / "gen-000099.vindex"
    stale.write_bytes(b"x")
    fourth = _index(directory, persist_rows=1)
    _model(fourth)
    assert not stale.exists() and saved.exists()


def test_rebuild_with_the_same_rows_moves_over_without_a_second_copy(tmp_path: Path) -> None:
    directory, gen, _ = _library(tmp_path)
    index = _index(directory, persist=False)
    m = _model(index)
    loaded = index.loaded_rows
    same = directory / "gen-000002.db"
    shutil.copyfile(gen, same)
    readmodel.swap(directory, same)
    assert _model(index) is m and index.generation == same and m.source == same
    assert index.loaded_rows == loaded  # nothing re-read
    # An API started after a rebuild takes the saved copy of the old generation over.
    saver = _index(directory, persist_rows=1)
    _model(saver)
    assert vector_file.file_for(same).exists()
    newer = directory / "gen-000003.db"
    shutil.copyfile(same, newer)
    readmodel.swap(directory, newer)
    restarted = _index(directory)
    assert _model(restarted).n == m.n and restarted.loaded_rows == 0
    assert restarted.generation == newer and _model(restarted).source == newer
    # A generation with other rows is loaded in the background, then swapped in.
    other = readmodel.new_generation(directory)
    y = _data(1200, seed=4)
    _write(other, y)
    readmodel.swap(directory, other)
    assert _model(index) is m  # keeps serving meanwhile
    index.wait_loaded()
    m2 = _model(index)
    assert m2 is not m and m2.n == len(y) and index.generation == other
    assert VectorIndex.rank(m2, y[3], 1)[0][0] == _hash(3)


def test_a_small_exact_model_is_saved_and_loaded_too(tmp_path: Path) -> None:
    directory, _, x = _library(tmp_path, n=300)
    first = VectorIndex(directory, persist_rows=1)
    m1 = _model(first)
    assert not m1.approximate and first.saves == 1
    again = VectorIndex(directory)
    m2 = _model(again)
    assert again.loaded_rows == 0 and not m2.approximate
    assert np.array_equal(m2.matrix, x) and m2.rows[_hash(299)] == 299
    assert VectorIndex.rank(m1, x[5], 7) == VectorIndex.rank(m2, x[5], 7)
