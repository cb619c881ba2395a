"""The in-memory vector index over ``clip_vectors``: one :class:`ModelMatrix` per model.

Loaded once from the current read-model generation (or from its saved copy, see
:mod:`projections.vector_file`, then only the rows above the seq it holds), extended
incrementally from rows with ``seq`` above the last one seen (an indexed range scan),
never rebuilt per query, and saved again after ``persist_rows`` new rows. Small models
rank exactly; large ones approximately with an exact re-rank (:mod:`projections.vector_model`).

When ``CURRENT`` names a new generation (after ``eventsvc rebuild``) the index checks
that the new generation holds the very rows it has (a rebuild replays the same log):
then it moves over at once, keeping its vectors (no second copy). Otherwise it keeps
serving what it has and loads the new generation in a background thread, then swaps.
Rows are unit vectors, so cosine similarity is a dot product.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eventsvc.core.errors import ReadModelError
from projections import readmodel, vector_file
from projections.vector_model import ModelMatrix, top_k

__all__ = ["ModelMatrix", "ModelSummary", "VectorIndex", "top_k"]

log = logging.getLogger(__name__)


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
    unsaved: int = 0


class VectorIndex:
    def __init__(
        self, readmodel_dir: Path, *, batch: int = 50_000, ann_min: int = 50_000,
        nprobe: int = 32, rerank: float = 1.5, persist: bool = True,
        persist_rows: int = 10_000,
    ) -> None:  # fmt: skip
        self.directory = Path(readmodel_dir)
        self.batch = batch
        self.ann_min = ann_min
        self.nprobe = nprobe
        self.rerank = rerank
        self.persist = persist
        self.persist_rows = persist_rows
        self.saves = 0
        self._no_carry: Path | None = None
        self._state: _State | None = None
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None
        self.syncs = 0
        self.loaded_rows = 0

    # ------------------------------------------------------------ keeping current

    def _pull(self, state: _State) -> int:
        """Rows above ``state.last_seq`` into the matrices; the model summaries."""
        added = 0
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
                        m = state.models[version] = ModelMatrix(
                            version,
                            dim,
                            ann_min=self.ann_min,
                            nprobe=self.nprobe,
                            rerank=self.rerank,
                        )
                    m.source = state.path
                    good = [
                        r
                        for r in group
                        if r[2] == m.dim and len(r[3]) == 4 * m.dim and r[4] > m.last_seq
                    ]
                    if good:
                        vecs = np.frombuffer(b"".join(r[3] for r in good), "<f4").reshape(
                            len(good), m.dim
                        )
                        m.add_many([r[1] for r in good], vecs, int(good[0][4]), int(good[-1][4]))
                        added += len(good)
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
        return added

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

    # ------------------------------------------------------------ persistence

    def _fresh(self, path: Path) -> _State:
        """A state for ``path``: from its saved copy when there is a usable one, else from
        the newest saved copy of another generation that holds the same rows (a rebuild
        while no API ran), else empty."""
        if not self.persist:
            return _State(path)
        for gen in [path, *(g for g in vector_file.saved(self.directory) if g != path)][:2]:
            got = vector_file.load(
                gen, ann_min=self.ann_min, nprobe=self.nprobe, rerank=self.rerank
            )
            if got is None:
                continue
            state = _State(gen)
            state.models, state.last_seq = got
            if gen == path or self._carry(state, path):
                log.info("vector index: %s loaded from the saved copy of %s", path.name, gen.name)
                return state
        return _State(path)

    def _after_pull(self, state: _State, added: int) -> None:
        state.unsaved += added
        rows = sum(m.n for m in state.models.values())
        if not self.persist or state.unsaved < max(self.persist_rows, rows // 20):
            return
        state.unsaved = 0
        try:
            vector_file.save(state.path, state.models, state.last_seq)
            self.saves += 1
            gens = {p.stem for p in self.directory.glob("gen-*.db")}
            vector_file.prune(self.directory, gens)
        except OSError as exc:  # a read-only data dir: serve, just do not save
            log.warning("vector index: cannot save: %r", exc)

    def _carry(self, state: _State, path: Path) -> bool:
        """Move ``state`` onto generation ``path`` when that holds the same rows up to
        ``state.last_seq`` (a rebuild from the same log): no second copy of the vectors."""
        want = {v: (m.n, m.last_seq) for v, m in state.models.items() if m.n}
        try:
            conn = readmodel.open_reader(path)
            try:
                conn.execute("BEGIN")
                got = {
                    r[0]: (int(r[1]), int(r[2]))
                    for r in conn.execute(
                        "SELECT model_version, count(*), max(seq) FROM clip_vectors"
                        " WHERE seq <= ? GROUP BY model_version",
                        (state.last_seq,),
                    )
                }
                if got != want:
                    return False
                rng = np.random.default_rng()
                for v, m in state.models.items():
                    for row in rng.integers(0, m.n, min(m.n, 8)):
                        h = m.hashes[int(row)]
                        found = conn.execute(
                            "SELECT vector FROM clip_vectors WHERE model_version = ?"
                            " AND content_hash = ?",
                            (v, h),
                        ).fetchone()
                        if found is None:
                            return False
                        if not m.approximate and found[0] != m.matrix[int(row)].tobytes():
                            return False
                conn.rollback()
            finally:
                conn.close()
        except (sqlite3.Error, ReadModelError) as exc:
            log.warning("vector index: cannot check %s: %r", path.name, exc)
            return False
        state.path = path
        state.checkpoint = -1
        state.unsaved = max(state.unsaved, self.persist_rows if state.models else 0)
        for m in state.models.values():
            m.source = path
        return True

    def _load_new(self, path: Path) -> None:
        try:
            state = self._fresh(path)
            self._after_pull(state, self._pull(state))
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
            if state is not None and state.path != current and self._no_carry != current:
                if self._carry(state, current):
                    log.info("vector index: moved onto %s (same rows)", current.name)
                else:
                    self._no_carry = current
            if state is not None and state.path != current:
                if self._loading is None or not self._loading.is_alive():
                    self._loading = threading.Thread(
                        target=self._load_new, args=(current,), daemon=True, name="vector-load"
                    )
                    self._loading.start()
                return state  # serve what we have meanwhile
            if state is None:
                state = self._fresh(current)
            try:
                self._after_pull(state, self._pull(state))
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
        pos, vals = m.rank(q, k, threshold, candidates, rows)
        hashes = m.hashes
        return [(hashes[p], float(v)) for p, v in zip(pos, vals, strict=True)]
