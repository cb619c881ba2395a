"""The vectors of one CLIP model: exact float32 while small, IVF + 8-bit codes when large.

Below ``ann_min`` rows the vectors sit in a float32 matrix ranked exactly (a dot
product and an argpartition, as fast as numpy at that size). At ``ann_min`` the model
trains a faiss ``IndexIVFScalarQuantizer`` (inverted lists of 8-bit codes, inner
product) on the rows it has, moves them in and drops the matrix: 1M x 512 then takes
~0.52 GB instead of 2.05 GB, grows list by list (no doubling copy of the whole), and a
query scans ``nprobe`` lists. The best candidates (``rerank`` times the results wanted,
at least 16 more) are re-ranked exactly with their float32 vectors read back from the
read model, so the scores returned are the exact cosines. Filters become a faiss ID
selector with more lists probed the smaller the filtered share (2 / share times), so
a 1 % filter still finds its best matches; pages deeper than ``ANN_MAX_K`` scan every list.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from projections import readmodel
from projections.vector_keys import HashKeys

__all__ = ["ANN_MAX_K", "ModelMatrix", "faiss_available", "top_k"]

log = logging.getLogger(__name__)

ANN_MAX_K = 1000
"""Deeper than this many results, an approximate search probes every list."""


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def top_k(
    scores: np.ndarray, k: int, threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores of the ``k`` best scores (>= threshold), best first."""
    if threshold is not None:
        keep = np.flatnonzero(scores >= threshold)
        if len(keep) > k:
            part = np.argpartition(scores[keep], len(keep) - k)[len(keep) - k :]
            keep = keep[part]
    elif len(scores) > k:
        keep = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
    else:
        keep = np.arange(len(scores))
    order = np.argsort(-scores[keep], kind="stable")
    pos = keep[order]
    return pos, scores[pos]


class _Rows:
    """``m.rows.get(hash)`` / ``m.rows[hash]`` / ``hash in m.rows``: the row of a hash."""

    def __init__(self, keys: HashKeys) -> None:
        self._keys = keys

    def get(self, h: str, default: int | None = None) -> int | None:
        got = self._keys.row(h)
        return default if got is None else got

    def __getitem__(self, h: str) -> int:
        got = self._keys.row(h)
        if got is None:
            raise KeyError(h)
        return got

    def __contains__(self, h: object) -> bool:
        return isinstance(h, str) and self._keys.row(h) is not None

    def __len__(self) -> int:
        return len(self._keys)


class _Hashes:
    """``m.hashes[row]``: the hash of a row."""

    def __init__(self, keys: HashKeys) -> None:
        self._keys = keys

    def __getitem__(self, row: int) -> str:
        return self._keys.key(int(row))

    def __len__(self) -> int:
        return len(self._keys)


class ModelMatrix:
    """The vectors of one model (rows are only ever appended; a re-encoded content keeps
    its row and gets its new vector)."""

    def __init__(
        self, version: str, dim: int, *, ann_min: int = 50_000, nprobe: int = 32,
        rerank: float = 1.5,
    ) -> None:  # fmt: skip
        self.version = version
        self.dim = dim
        self.ann_min = ann_min
        self.nprobe = nprobe
        self.rerank = rerank
        self.keys = HashKeys()
        self.rows = _Rows(self.keys)
        self.hashes = _Hashes(self.keys)
        self._mat = np.zeros((0, dim), np.float32)
        self.ivf: Any = None
        self.n = 0
        self.first_seq = 1 << 62
        self.last_seq = 0
        self.source: Path | None = None
        """The read-model generation the float vectors are re-read from (re-ranking)."""
        self.lock = threading.Lock()  # faiss: no search while adding

    def set_keys(self, keys: HashKeys) -> None:
        self.keys = keys
        self.rows = _Rows(keys)
        self.hashes = _Hashes(keys)

    def set_matrix(self, mat: np.ndarray) -> None:
        """The float32 rows of an exact model (loading a saved copy)."""
        if mat.ndim != 2 or mat.shape[1] != self.dim:
            raise ValueError(f"matrix of shape {mat.shape}, not (n, {self.dim})")
        self._mat = mat

    # ------------------------------------------------------------ filling

    def add_many(
        self, hashes: list[str], vectors: np.ndarray, first_seq: int, last_seq: int = 0
    ) -> None:
        self.first_seq = min(self.first_seq, first_seq)
        self.last_seq = max(self.last_seq, last_seq)
        vectors = np.ascontiguousarray(vectors, np.float32)
        fresh: list[int] = []
        replaced: list[tuple[int, int]] = []
        for i, h in enumerate(hashes):
            row = self.keys.row(h)
            if row is None:
                fresh.append(i)
            else:
                replaced.append((i, row))
        with self.lock:
            if self.ivf is None:
                for i, row in replaced:
                    self._mat[row] = vectors[i]
                self._add_exact(hashes, vectors, fresh)
                if self.n >= self.ann_min and faiss_available():
                    self._to_ann()
            else:
                self._add_ann(hashes, vectors, fresh, replaced)

    def _add_exact(self, hashes: list[str], vectors: np.ndarray, fresh: list[int]) -> None:
        if not fresh:
            return
        need = self.n + len(fresh)
        if need > len(self._mat):
            grown = np.zeros((max(need, len(self._mat) * 2, 1024), self.dim), np.float32)
            grown[: self.n] = self._mat[: self.n]
            self._mat = grown
        self._mat[self.n : need] = vectors[fresh]
        for i in fresh:
            self.keys.append(hashes[i])
        self.n = need

    def _add_ann(
        self, hashes: list[str], vectors: np.ndarray, fresh: list[int],
        replaced: list[tuple[int, int]],
    ) -> None:  # fmt: skip
        import faiss

        if replaced:
            ids = np.array([r for _, r in replaced], np.int64)
            self.ivf.remove_ids(faiss.IDSelectorBatch(ids))
            self.ivf.add_with_ids(vectors[[i for i, _ in replaced]], ids)
        if fresh:
            rows = np.array([self.keys.append(hashes[i]) for i in fresh], np.int64)
            self.ivf.add_with_ids(vectors[fresh], rows)
            self.n += len(fresh)

    def _to_ann(self) -> None:
        import faiss

        n = self.n
        nlist = max(1, min(1024, n // 39))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        ivf.cp.niter = 12
        rng = np.random.default_rng(0)
        sample = self._mat[np.sort(rng.choice(n, min(n, 100_000), replace=False))]
        ivf.train(sample)
        del sample
        step = 65_536
        for start in range(0, n, step):
            stop = min(n, start + step)
            ivf.add_with_ids(self._mat[start:stop], np.arange(start, stop, dtype=np.int64))
        self.ivf = ivf
        self._mat = np.zeros((0, self.dim), np.float32)
        log.info("vector index: %s now approximate (%d rows, %d lists)", self.version, n, nlist)

    # ------------------------------------------------------------ reading

    @property
    def approximate(self) -> bool:
        return self.ivf is not None

    @property
    def matrix(self) -> np.ndarray:
        """(n, dim) float32 view of the rows (exact mode only)."""
        if self.ivf is not None:
            raise RuntimeError("an approximate model keeps no float matrix")
        return self._mat[: self.n]

    def positions(self, hashes: Iterable[str]) -> np.ndarray:
        return self.keys.rows(hashes)

    def vector(self, row: int) -> np.ndarray:
        """The float32 vector of a row (read back from the read model when approximate)."""
        if self.ivf is None:
            return self._mat[row].copy()
        got = self.exact_vectors([self.hashes[row]])
        if got:
            return next(iter(got.values()))
        with self.lock:
            return np.asarray(self.ivf.reconstruct(int(row)), np.float32)

    def exact_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        """float32 vectors of ``hashes`` from the read model (those it has)."""
        out: dict[str, np.ndarray] = {}
        if self.source is None or not hashes:
            return out
        try:
            conn = readmodel.open_reader(self.source)
        except Exception:
            return out
        try:
            for start in range(0, len(hashes), 500):
                part = hashes[start : start + 500]
                marks = ",".join("?" * len(part))
                for h, blob in conn.execute(
                    "SELECT content_hash, vector FROM clip_vectors"
                    f" WHERE model_version = ? AND content_hash IN ({marks})",
                    (self.version, *part),
                ):
                    if len(blob) == 4 * self.dim:
                        out[h] = np.frombuffer(blob, "<f4")
        except sqlite3.Error as exc:
            log.warning("vector index: re-rank read failed: %r", exc)
        finally:
            conn.close()
        return out

    @property
    def nbytes(self) -> int:
        """Memory held: vectors (or codes, ids, centroids) and the keys."""
        if self.ivf is None:
            return self._mat.nbytes + self.keys.nbytes
        lists = self.ivf.invlists
        codes = sum(lists.list_size(i) for i in range(self.ivf.nlist))
        per = self.ivf.code_size + 8
        return codes * per + self.ivf.nlist * self.dim * 4 + self.keys.nbytes

    def rank(
        self,
        q: np.ndarray,
        k: int,
        threshold: float | None,
        candidates: np.ndarray | None,
        rows: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and exact scores of the top ``k`` (see :meth:`VectorIndex.rank`)."""
        mat = self._mat[: self.n]  # read before ivf: _to_ann sets ivf, then drops _mat
        if self.ivf is None:
            mat = mat if rows is None else mat[:rows]
            if candidates is None:
                return top_k(mat @ q, k, threshold)
            sub, vals = top_k(mat[candidates] @ q, k, threshold)
            return candidates[sub], vals
        return self._rank_ann(q, k, threshold, candidates, rows)

    def _rank_ann(
        self, q: np.ndarray, k: int, threshold: float | None,
        candidates: np.ndarray | None, rows: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        import faiss

        size = self.n  # once: rows may be added meanwhile
        n = size if rows is None else min(rows, size)
        total = n if candidates is None else len(candidates)
        if total == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        want = int(min(total, max(math.ceil(k * self.rerank), k + 16)))
        nlist = int(self.ivf.nlist)
        share = total / max(1, size)
        # A filtered share's best matches lie farther out: probe 2/share times the lists.
        widen = 1.0 if share >= 1.0 else 2.0 / share
        nprobe = nlist if k > ANN_MAX_K else min(nlist, math.ceil(self.nprobe * widen))
        keep: Any = None
        if candidates is not None:
            bits = np.zeros(size, bool)
            bits[candidates[candidates < size]] = True
            keep = np.packbits(bits, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(keep), faiss.swig_ptr(keep))  # n: bytes
        elif n < size:
            sel = faiss.IDSelectorRange(0, n)
        else:
            sel = None
        qq = np.ascontiguousarray(q.reshape(1, -1), np.float32)
        while True:
            params = faiss.SearchParametersIVF(nprobe=nprobe, sel=sel)
            with self.lock:
                approx, ids = self.ivf.search(qq, want, params=params)
            found = ids[0] >= 0
            if found.sum() >= min(want, total) or nprobe >= nlist:
                break
            nprobe = min(nlist, nprobe * 4)  # too few in the probed lists: look wider
        del keep
        got_rows = ids[0][found].astype(np.int64)
        approx_scores = approx[0][found]
        hashes = [self.hashes[r] for r in got_rows]
        exact = self.exact_vectors(hashes)
        scores = np.array(
            [
                float(exact[h] @ q) if h in exact else float(a)
                for h, a in zip(hashes, approx_scores, strict=True)
            ],
            np.float32,
        )
        pos, vals = top_k(scores, k, threshold)
        return got_rows[pos], vals
