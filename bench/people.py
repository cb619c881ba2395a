"""people: the clusterer placing faces vs the bare exact nearest-neighbour searches it needs.

Setup (not timed): FACES synthetic 128-d descriptors (norm 1.45, like dlib's) of PEOPLE
people (jitter 0.2 around each centre) and STRANGERS faces of nobody, in a random order,
one face per photo, as FacesDetected events.

(a) ours: ``Clusterer.add`` for every event, in order (placing, founding people, the
    bookkeeping of centroids and the pool of unassigned faces), faces/s;
(b) bare: for each face, the exact searches the rules call for, done with numpy over
    matrices of the same sizes as ours at that moment: every person's centroids, and,
    when the face joined nobody, every unassigned face (``|a|^2 - 2ab + |b|^2`` with the
    squared norms precomputed, then the rows within the threshold). No bookkeeping.

RUNS runs of each, alternating which goes first, garbage collector off; each side's
figure is the median of its runs. ratio = ours / bare faces/s; goal >= 0.5. The rate at
the end of the run is reported too, with the pool at its largest.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from bench.common import (
    Outcome,
    add_runs,
    base_parser,
    median,
    quiet_gc,
    rate,
    run_main,
    runs_of,
    say,
    spread,
)
from eventsvc.core.events import FaceAssigned, FaceBox, FacesDetected, PersonCreated
from eventsvc.derive.people import Clusterer

__all__ = ["main"]

GOAL = ">= 0.5"


def _events(people: int, faces: int, strangers: int, seed: int) -> list[FacesDetected]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 128))
    centres *= 1.45 / np.linalg.norm(centres, axis=1)[:, None]
    out = []
    for n in rng.permutation(faces + strangers):
        if n < faces:
            v = rng.normal(size=128)
            emb = centres[n % people] + v / np.linalg.norm(v) * 0.2
        else:
            emb = rng.normal(size=128)
            emb *= 1.45 / np.linalg.norm(emb)
        box = FaceBox(
            box=(0.1, 0.1, 0.3, 0.3), score=1.0, landmarks=[(0.0, 0.0)] * 5,
            embedding=[float(x) for x in emb],
        )  # fmt: skip
        content = hashlib.blake2b(str(int(n)).encode(), digest_size=32).hexdigest()
        out.append(FacesDetected(content_hash=content, model="bench", faces=[box]))
    return out


def _ours(events: list[FacesDetected]) -> tuple[float, list[tuple[int, int, bool]], float]:
    """Seconds, and per face: (parts, pooled) before placing it and whether it joined."""
    c = Clusterer()
    shapes: list[tuple[int, int, bool]] = []
    tail_n = max(1, len(events) // 10)
    with quiet_gc():
        t0 = time.perf_counter()
        for k, e in enumerate(events):
            if k == len(events) - tail_n:
                t_tail = time.perf_counter()
            parts, pooled = c.index_sizes()
            out = c.add(e)
            joined = any(isinstance(x, FaceAssigned) for x in out) and not any(
                isinstance(x, PersonCreated) for x in out
            )
            shapes.append((parts, pooled, joined))
        t1 = time.perf_counter()
    say(f"ours: {len(c.people)} people, {len(c.pool)} faces unassigned")
    return t1 - t0, shapes, rate(tail_n, t1 - t_tail)


def _bare(events: list[FacesDetected], shapes: list[tuple[int, int, bool]]) -> float:
    embs = np.array([e.faces[0].embedding for e in events])
    width = max(max(p for p, _, _ in shapes), max(q for _, q, _ in shapes), 1)
    rng = np.random.default_rng(9)
    bank = rng.normal(size=(width, 128))
    bank *= 1.45 / np.linalg.norm(bank, axis=1)[:, None]
    sq = np.einsum("ij,ij->i", bank, bank)
    t2 = 0.5 * 0.5
    with quiet_gc():
        t0 = time.perf_counter()
        for e, (parts, pooled, joined) in zip(embs, shapes, strict=True):
            ee = float(e @ e)
            for n in (parts,) if joined else (parts, pooled):
                if n:
                    d2 = sq[:n] - 2.0 * (bank[:n] @ e) + ee
                    np.flatnonzero(d2 <= t2)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = base_parser("people", __doc__)
    p.add_argument("--people", type=int, default=None, help="default 2000 (--quick 300)")
    p.add_argument("--faces", type=int, default=None, help="default 40000 (--quick 6000)")
    p.add_argument("--strangers", type=int, default=None, help="default 20000 (--quick 3000)")
    add_runs(p, quick=3)
    a = p.parse_args(argv)
    runs = runs_of(a)
    people = a.people or (300 if a.quick else 2000)
    faces = a.faces or (6000 if a.quick else 40000)
    strangers = a.strangers if a.strangers is not None else (3000 if a.quick else 20000)

    def body() -> Outcome:
        t0 = time.perf_counter()
        events = _events(people, faces, strangers, seed=1)
        total = len(events)
        made = time.perf_counter() - t0
        say(f"{total} faces ({people} people, {strangers} strangers) in {made:.1f}s")
        t_ours: list[float] = []
        t_bare: list[float] = []
        tails: list[float] = []
        shapes: list[tuple[int, int, bool]] | None = None
        for r in range(runs):
            for who in ("ours", "bare") if r % 2 == 0 or shapes is None else ("bare", "ours"):
                if who == "ours":
                    dt, got, tail = _ours(events)
                    if shapes is not None and got != shapes:
                        raise SystemExit("the clusterer placed the faces differently this run")
                    shapes = got
                    t_ours.append(dt)
                    tails.append(tail)
                    say(f"run {r + 1}/{runs} ours: {dt:.2f}s, {rate(total, dt):.0f} faces/s; "
                        f"last tenth {tail:.0f}/s")  # fmt: skip
                else:
                    assert shapes is not None
                    t_bare.append(_bare(events, shapes))
                    say(f"run {r + 1}/{runs} bare: {t_bare[-1]:.2f}s, "
                        f"{rate(total, t_bare[-1]):.0f} faces/s")  # fmt: skip
        assert shapes is not None
        value, limit = rate(total, median(t_ours)), rate(total, median(t_bare))
        return {
            "value": round(value, 1), "limit": round(limit, 1), "unit": "faces/s (medians)",
            "ratio": round(value / limit, 3), "goal": GOAL, "faces": total, "runs": runs,
            "ours_runs_s": spread(t_ours), "bare_runs_s": spread(t_bare),
            "people": people, "last_tenth_faces_per_s": round(median(tails), 1),
            "pool_at_end": shapes[-1][1],
        }  # fmt: skip

    return run_main("people", body, a.strict)
