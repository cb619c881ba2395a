"""The in-memory vector index over ``clip_vectors``: one float32 matrix per model.

Loaded once from the current read-model generation, then extended incrementally from
rows with ``seq`` above the last one seen (an indexed range scan), never rebuilt per
query. When ``CURRENT`` names a new generation (after ``eventsvc rebuild``) the index
keeps serving what it has and loads the new generation in a background thread, then
swaps. Rows are unit vectors, so cosine similarity is a dot product; the top k come
from ``argpartition``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from projections import readmodel

__all__ = ["ModelMatrix", "ModelSummary", "VectorIndex", "top_k"]

log = logging.getLogger(__name__)


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


class ModelMatrix:
    """The vectors of one model, in a growable float32 matrix."""

    def __init__(self, version: str, dim: int) -> None:
        self.version = version
        self.dim = dim
        self.hashes: list[str] = []
        self.rows: dict[str, int] = {}
        self._mat = np.zeros((0, dim), np.float32)
        self.n = 0
        self.first_seq = 1 << 62

    def add_many(self, hashes: list[str], vectors: np.ndarray, first_seq: int) -> None:
        self.first_seq = min(self.first_seq, first_seq)
        fresh: list[int] = []
        for i, h in enumerate(hashes):
            row = self.rows.get(h)
            if row is None:
                fresh.append(i)
            else:
                self._mat[row] = vectors[i]
        if not fresh:
            return
        need = self.n + len(fresh)
        if need > len(self._mat):
            grown = np.zeros((max(need, len(self._mat) * 2, 1024), self.dim), np.float32)
            grown[: self.n] = self._mat[: self.n]
            self._mat = grown
        self._mat[self.n : need] = vectors[fresh]
        for j, i in enumerate(fresh):
            self.rows[hashes[i]] = self.n + j
            self.hashes.append(hashes[i])
        self.n = need

    @property
    def matrix(self) -> np.ndarray:
        """(n, dim) view: the rows present now (later rows may be appended behind it)."""
        return self._mat[: self.n]

    def positions(self, hashes: Iterable[str]) -> np.ndarray:
        rows = self.rows
        return np.fromiter((rows[h] for h in hashes if h in rows), dtype=np.int64)


@dataclass
class ModelSummary:
    version: str
    dim: int
    vectors: int
    complete: bool
    first_seq: int


@dataclass
class _State:
    path: Path
    last_seq: int = 0
    models: dict[str, ModelMatrix] = field(default_factory=dict)
    checkpoint: int = -1
    summaries: list[ModelSummary] = field(default_factory=list)


class VectorIndex:
    def __init__(self, readmodel_dir: Path, *, batch: int = 50_000) -> None:
        self.directory = Path(readmodel_dir)
        self.batch = batch
        self._state: _State | None = None
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None
        self.syncs = 0
        self.loaded_rows = 0

    # ------------------------------------------------------------ keeping current

    def _pull(self, state: _State) -> None:
        """Rows above ``state.last_seq`` into the matrices; the model summaries."""
        conn = readmodel.open_reader(state.path)
        try:
            conn.execute("BEGIN")
            while True:
                rows = conn.execute(
                    "SELECT model_version, content_hash, dim, vector, seq FROM clip_vectors"
                    " WHERE seq > ? ORDER BY seq LIMIT ?",
                    (state.last_seq, self.batch),
                ).fetchall()
                if not rows:
                    break
                by_model: dict[str, list[sqlite3.Row]] = {}
                for r in rows:
                    by_model.setdefault(r[0], []).append(r)
                for version, group in by_model.items():
                    dim = int(group[0][2])
                    m = state.models.get(version)
                    if m is None:
                        m = state.models[version] = ModelMatrix(version, dim)
                    good = [r for r in group if r[2] == m.dim and len(r[3]) == 4 * m.dim]
                    if good:
                        vecs = np.frombuffer(b"".join(r[3] for r in good), "<f4").reshape(
                            len(good), m.dim
                        )
                        m.add_many([r[1] for r in good], vecs, int(good[0][4]))
                self.loaded_rows += len(rows)
                state.last_seq = int(rows[-1][4])
                if len(rows) < self.batch:
                    break
            cp = readmodel.checkpoint(conn)
            if cp != state.checkpoint:
                state.summaries = self._summaries(conn, state)
                state.checkpoint = cp
            conn.rollback()
        finally:
            conn.close()

    @staticmethod
    def _summaries(conn: sqlite3.Connection, state: _State) -> list[ModelSummary]:
        images = conn.execute("SELECT count(*) FROM content WHERE media_kind = 'image'").fetchone()[
            0
        ]
        failed = conn.execute(
            "SELECT count(DISTINCT content_hash) FROM failures"
            " WHERE stage LIKE 'clip%' AND content_hash IS NOT NULL"
        ).fetchone()[0]
        out = [
            ModelSummary(m.version, m.dim, m.n, m.n + failed >= images, m.first_seq)
            for m in state.models.values()
        ]
        return sorted(out, key=lambda s: s.first_seq, reverse=True)  # newest first

    def _load_new(self, path: Path) -> None:
        state = _State(path)
        try:
            self._pull(state)
        except Exception as exc:  # keep serving the old generation; try again later
            log.warning("vector index: loading %s failed: %r", path.name, exc)
            return
        with self._lock:
            self._state = state
        log.info("vector index: now on %s (%d models)", path.name, len(state.models))

    def sync(self) -> _State | None:
        """Bring the index up to date (cheap when nothing changed); the state to use."""
        current = readmodel.current_path(self.directory)
        if current is None or not current.exists():
            return self._state
        with self._lock:
            state = self._state
            if state is not None and state.path != current:
                if self._loading is None or not self._loading.is_alive():
                    self._loading = threading.Thread(
                        target=self._load_new, args=(current,), daemon=True, name="vector-load"
                    )
                    self._loading.start()
                return state  # serve what we have meanwhile
            if state is None:
                state = _State(current)
            try:
                self._pull(state)
            except Exception as exc:
                if self._state is None:
                    raise
                log.warning("vector index: sync failed: %r", exc)
            self._state = state
            self.syncs += 1
            return state

    def wait_loaded(self, timeout: float = 30.0) -> None:
        t = self._loading
        if t is not None:
            t.join(timeout)

    @property
    def generation(self) -> Path | None:
        return self._state.path if self._state else None

    # ------------------------------------------------------------ asking

    def models(self) -> list[ModelSummary]:
        state = self.sync()
        return list(state.summaries) if state else []

    def choose(self, state: _State | None, version: str | None) -> ModelMatrix | None:
        """The asked model, else the newest complete one, else the one with most vectors."""
        if state is None:
            return None
        if version is not None:
            return state.models.get(version)
        complete = [s for s in state.summaries if s.complete]
        pick = (
            complete[0] if complete else max(state.summaries, key=lambda s: s.vectors, default=None)
        )
        return state.models.get(pick.version) if pick else None

    @staticmethod
    def rank(
        m: ModelMatrix,
        query: np.ndarray,
        k: int,
        threshold: float | None = None,
        candidates: np.ndarray | None = None,
        rows: int | None = None,
    ) -> list[tuple[str, float]]:
        """Top k (content_hash, score) by cosine, among ``candidates`` rows if given, and
        among the first ``rows`` rows if given (a paged search pins the rows it saw)."""
        q = np.asarray(query, np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        mat = m.matrix if rows is None else m.matrix[:rows]
        if candidates is None:
            scores = mat @ q
            pos, vals = top_k(scores, k, threshold)
        else:
            scores = mat[candidates] @ q
            sub, vals = top_k(scores, k, threshold)
            pos = candidates[sub]
        hashes = m.hashes
        return [(hashes[p], float(v)) for p, v in zip(pos, vals, strict=True)]
