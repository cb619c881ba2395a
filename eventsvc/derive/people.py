"""People: faces clustered incrementally, as events, with human decisions always winning.

Rules of the clusterer (``Clusterer.place``), for each new face in stream order:

1. It joins the person whose centroid (mean descriptor of its faces) is nearest, if that
   distance is at most ``threshold`` and the person holds no other face of the same
   photo (two faces of one photo are two people). The faces of one photo are placed
   nearest-first (``next_to_place``): when two of them are near one person, the nearer
   joins and the other goes to its next-nearest person, or waits.
2. Otherwise it waits, unassigned. When it has at least ``min_samples - 1`` unassigned
   neighbours within ``threshold`` from other photos (the core-point rule of DBSCAN), a
   person is founded: the face and its neighbours (the nearest one per photo). The
   person id derives from the founding face, so a re-run publishes the same events.

Human decisions (``PeopleMerged``, ``FaceReassigned``, ``FaceRejected``) are applied to
the same state: a merged person's id resolves to its target, a reassigned face is locked
where it was put, a rejected face is never assigned again.

The state at start-up is folded from the log (faces, the clusterer's own results and the
decisions), never from a private file. One ``people`` worker per stream: it is ordered.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from eventsvc.core.errors import DecodeError
from eventsvc.core.events import (
    Event,
    FaceAssigned,
    FaceReassigned,
    FaceRejected,
    FacesDetected,
    PeopleMerged,
    PersonCreated,
    decode,
    face_id,
)
from eventsvc.core.log import ConsumerSpec, EventLog
from eventsvc.derive.worker import Worker, WorkerStats

__all__ = ["Clusterer", "PeopleStats", "PeopleWorker", "fold_subjects", "person_id_for"]

log = logging.getLogger(__name__)


K = TypeVar("K")


def person_id_for(founder: str) -> str:
    return "p-" + hashlib.blake2b(founder.encode(), digest_size=8).hexdigest()


class _Bank(Generic[K]):
    """Vectors by key in one growable matrix, so a query is one matrix product instead of
    a Python loop (or a fresh ``np.stack``) over every key. Removal moves the last row
    into the hole; row order carries no meaning."""

    def __init__(self, dim: int = 128) -> None:
        self._mat = np.zeros((64, dim))
        self._sq = np.zeros(64)
        self.keys: list[K] = []
        self.rows: dict[K, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def put(self, key: K, vec: np.ndarray) -> None:
        row = self.rows.get(key)
        if row is None:
            row = len(self.keys)
            if row == len(self._mat):
                self._mat = np.concatenate([self._mat, np.zeros_like(self._mat)])
                self._sq = np.concatenate([self._sq, np.zeros_like(self._sq)])
            self.rows[key] = row
            self.keys.append(key)
        self._mat[row] = vec
        self._sq[row] = float(vec @ vec)

    def drop(self, key: K) -> None:
        row = self.rows.pop(key, None)
        if row is None:
            return
        last = len(self.keys) - 1
        if row != last:
            moved = self.keys[last]
            self._mat[row] = self._mat[last]
            self._sq[row] = self._sq[last]
            self.keys[row] = moved
            self.rows[moved] = row
        self.keys.pop()

    def within(self, vec: np.ndarray, radius: float) -> list[tuple[float, K]]:
        """(distance, key) of the rows within ``radius`` of ``vec``, nearest first.

        Candidates come from |a-b|^2 = |a|^2 - 2ab + |b|^2 over the whole matrix, with a
        margin for rounding; their distances are then computed exactly, as
        ``np.linalg.norm(a - b)``, so results do not depend on the shortcut.
        """
        n = len(self.keys)
        if not n:
            return []
        mat = self._mat[:n]
        d2 = self._sq[:n] - 2.0 * (mat @ vec) + float(vec @ vec)
        near = np.flatnonzero(d2 <= radius * radius + 1e-6)
        if not len(near):
            return []
        exact = np.linalg.norm(mat[near] - vec, axis=1)
        out = [(float(d), self.keys[r]) for d, r in zip(exact, near, strict=True) if d <= radius]
        out.sort(key=lambda x: x[0])
        return out


class _Part:
    """A centroid: the sum and count of some faces of a person. A person founded by the
    clusterer has one; a merge keeps both sides' parts, so a person who looks two ways
    (glasses or not, child and adult) still attracts faces of either look. ``owner`` is
    the person the part belongs to now (merges move parts)."""

    __slots__ = ("n", "owner", "total")

    def __init__(self, owner: str) -> None:
        self.total = np.zeros(128)
        self.n = 0
        self.owner = owner

    def centroid(self) -> np.ndarray:
        return self.total / self.n


@dataclass
class _Face:
    id: str
    content: str
    emb: np.ndarray
    person: str | None = None
    part: _Part | None = None
    locked: bool = False
    rejected: bool = False


@dataclass
class _Person:
    id: str
    centroids: _Bank[_Part]
    """The clusterer's bank of every part's centroid, kept current as faces come and go."""
    parts: list[_Part] = field(default_factory=list)
    faces: set[str] = field(default_factory=set)
    contents: dict[str, int] = field(default_factory=dict)

    def distance(self, emb: np.ndarray) -> tuple[float, _Part | None]:
        best, part = float("inf"), None
        for p in self.parts:
            if p.n:
                d = float(np.linalg.norm(emb - p.centroid()))
                if d < best:
                    best, part = d, p
        return best, part

    def add(self, f: _Face, new_part_beyond: float | None) -> None:
        """Into the nearest part; a new part when there is none, or when it is farther
        than ``new_part_beyond`` (a face put here by hand that looks unlike the rest)."""
        d, part = self.distance(f.emb)
        if part is None or (new_part_beyond is not None and d > new_part_beyond):
            part = _Part(self.id)
            self.parts.append(part)
        part.total = part.total + f.emb
        part.n += 1
        self.centroids.put(part, part.centroid())
        f.part = part
        self.faces.add(f.id)
        self.contents[f.content] = self.contents.get(f.content, 0) + 1

    def remove(self, f: _Face) -> None:
        self.faces.discard(f.id)
        if f.part is not None:
            f.part.total = f.part.total - f.emb
            f.part.n -= 1
            if f.part.n <= 0:
                self.parts = [p for p in self.parts if p is not f.part]
                self.centroids.drop(f.part)
            else:
                self.centroids.put(f.part, f.part.centroid())
        f.part = None
        left = self.contents.get(f.content, 1) - 1
        if left:
            self.contents[f.content] = left
        else:
            self.contents.pop(f.content, None)


class Clusterer:
    """The people state and the rules; pure (no I/O): events in, events out."""

    def __init__(self, threshold: float = 0.5, min_samples: int = 3) -> None:
        self.threshold = threshold
        self.min_samples = max(1, min_samples)
        self.faces: dict[str, _Face] = {}
        self.people: dict[str, _Person] = {}
        self.alias: dict[str, str] = {}
        self.pool: dict[str, _Face] = {}
        """Unassigned, not rejected faces; their descriptors are also in ``_pooled``."""
        self._pooled: _Bank[str] = _Bank()
        self._centroids: _Bank[_Part] = _Bank()
        self.models: dict[str, str] = {}
        """content -> the model whose faces are clustered (the first FacesDetected)."""

    def index_sizes(self) -> tuple[int, int]:
        """(centroids, unassigned faces): the rows a placement searches."""
        return len(self._centroids), len(self._pooled)

    # ---------------------------------------------------------------- folding events

    def resolve(self, person_id: str) -> str:
        seen = set()
        while person_id in self.alias and person_id not in seen:
            seen.add(person_id)
            person_id = self.alias[person_id]
        return person_id

    def _person(self, person_id: str) -> _Person:
        p = self.people.get(person_id)
        if p is None:
            p = self.people[person_id] = _Person(person_id, self._centroids)
        return p

    def _detach(self, f: _Face) -> None:
        if f.person is not None and f.person in self.people:
            self.people[f.person].remove(f)
        f.person = None
        self.pool.pop(f.id, None)
        self._pooled.drop(f.id)

    def _attach(self, f: _Face, person_id: str, by_hand: bool = False) -> None:
        self._detach(f)
        f.person = person_id
        self._person(person_id).add(f, self.threshold if by_hand else None)

    def faces_of(self, e: FacesDetected) -> list[str]:
        """Register the faces of ``e`` (if it is the content's clustered model); their ids."""
        model = self.models.setdefault(e.content_hash, e.model)
        if model != e.model:
            return []
        ids = []
        for i, box in enumerate(e.faces):
            fid = face_id(e.content_hash, e.model, i)
            if fid not in self.faces:
                f = _Face(fid, e.content_hash, np.asarray(box.embedding, dtype=np.float64))
                self.faces[fid] = f
                self.pool[fid] = f
                self._pooled.put(fid, f.emb)
            ids.append(fid)
        return ids

    def apply(self, e: Event) -> None:
        """Fold one event into the state (the clusterer's own results or a decision)."""
        if isinstance(e, FacesDetected):
            self.faces_of(e)
        elif isinstance(e, PersonCreated):
            self._person(self.resolve(e.person_id))
        elif isinstance(e, FaceAssigned):
            f = self.faces.get(e.face_id)
            if f is None or f.rejected or f.locked:
                return
            self._attach(f, self.resolve(e.person_id))
        elif isinstance(e, FaceReassigned):
            f = self.faces.get(e.face_id)
            if f is None:
                return
            f.rejected = False
            f.locked = True
            self._attach(f, self.resolve(e.person_id), by_hand=True)
        elif isinstance(e, FaceRejected):
            f = self.faces.get(e.face_id)
            if f is None:
                return
            self._detach(f)
            f.rejected = True
        elif isinstance(e, PeopleMerged):
            src, dst = self.resolve(e.source), self.resolve(e.target)
            if src == dst:
                return
            target = self._person(dst)
            source = self.people.pop(src, None)
            self.alias[src] = dst
            if source is not None:
                for part in source.parts:
                    part.owner = dst
                target.parts += source.parts
                target.faces |= source.faces
                for content, n in source.contents.items():
                    target.contents[content] = target.contents.get(content, 0) + n
                for fid in source.faces:
                    self.faces[fid].person = dst

    # ---------------------------------------------------------------- the rules

    def _joinable(self, f: _Face) -> tuple[_Person | None, float | None]:
        """The nearest person ``f`` may join now, and its distance; (None, None) if none."""
        for d, part in self._centroids.within(f.emb, self.threshold):  # nearest first
            p = self.people.get(part.owner)
            if p is not None and p.faces and f.content not in p.contents:
                return p, d
        return None, None

    def next_to_place(self, pending: list[str]) -> str:
        """Of a photo's faces still to place, the one nearest to a person it may join
        (ties: the first given); the first given when none may join any. Placing in this
        order, each after the previous one's result was applied, gives the nearer of two
        faces close to one person to that person."""
        best_fid, best_d = pending[0], None
        if len(pending) == 1:
            return best_fid
        for fid in pending:
            f = self.faces.get(fid)
            if f is None or f.person is not None or f.rejected:
                continue
            _, d = self._joinable(f)
            if d is not None and (best_d is None or d < best_d):
                best_fid, best_d = fid, d
        return best_fid

    def place(self, fid: str) -> list[Event]:
        """What the clusterer decides for one face (not yet applied to the state)."""
        f = self.faces.get(fid)
        if f is None or f.person is not None or f.rejected:
            return []
        best, best_d = self._joinable(f)
        if best is not None:
            return [
                FaceAssigned(
                    face_id=fid,
                    person_id=best.id,
                    content_hash=f.content,
                    distance=round(best_d or 0.0, 4),
                )
            ]
        nearest: dict[str, tuple[float, str]] = {}
        for d, oid in self._pooled.within(f.emb, self.threshold):
            other = self.faces[oid]
            if other.content == f.content:
                continue
            if other.content not in nearest or (d, other.id) < nearest[other.content]:
                nearest[other.content] = (d, other.id)
        if len(nearest) + 1 < self.min_samples:
            return []
        pid = person_id_for(fid)
        out: list[Event] = [PersonCreated(person_id=pid, founder=fid)]
        for member in [fid, *sorted(m for _, m in nearest.values())]:
            out.append(
                FaceAssigned(face_id=member, person_id=pid, content_hash=self.faces[member].content)
            )
        return out

    def add(self, e: FacesDetected) -> list[Event]:
        """Fold a FacesDetected and place its faces; returns (and applies) the results."""
        out: list[Event] = []
        pending = self.faces_of(e)
        while pending:
            fid = self.next_to_place(pending)
            pending.remove(fid)
            decided = self.place(fid)
            for ev in decided:
                self.apply(ev)
            out += decided
        return out


def fold_subjects(prefix: str) -> list[str]:
    return [
        f"{prefix}.content.*.FacesDetected.*",
        f"{prefix}.person.*.*",
        f"{prefix}.face.*.*",
    ]


def people_spec(prefix: str, settings_spec: ConsumerSpec) -> ConsumerSpec:
    """The people consumer: faces and the decisions that bind the clusterer."""
    return ConsumerSpec(
        durable="people",
        filter_subjects=(
            f"{prefix}.content.*.FacesDetected.*",
            f"{prefix}.person.*.PeopleMerged",
            f"{prefix}.face.*.FaceReassigned",
            f"{prefix}.face.*.FaceRejected",
        ),
        max_deliver=settings_spec.max_deliver,
        ack_wait=settings_spec.ack_wait,
        backoff=settings_spec.backoff,
        max_ack_pending=settings_spec.max_ack_pending,
        description="FacesDetected + decisions -> PersonCreated / FaceAssigned",
    )


@dataclass
class PeopleStats(WorkerStats):
    people: int = 0
    faces: int = 0
    unassigned: int = 0
    folded_to: int = 0


class PeopleWorker(Worker):
    """Ordered: one message fetched and handled at a time (batch 1), so a re-run sees the
    same order; its own results are published, then applied to the state."""

    def __init__(self, event_log: EventLog, spec: ConsumerSpec, clusterer: Clusterer) -> None:
        super().__init__("people", event_log, spec, self._handle, concurrency=1, batch=1)
        self.clusterer = clusterer
        self.stats = PeopleStats()
        self.folded_to = 0

    async def fold(self) -> int:
        """Build the state from the log, up to its current end."""
        end = await self.event_log.last_seq()
        async for batch in self.event_log.read(fold_subjects(self.event_log.prefix), stop_at=end):
            for raw in batch:
                try:
                    event = decode(raw.data, raw.headers)
                except DecodeError:
                    continue
                self.clusterer.apply(event)
        self.folded_to = end
        self._count()
        return end

    def _count(self) -> None:
        c = self.clusterer
        self.stats.people = sum(1 for p in c.people.values() if p.faces)
        self.stats.faces = len(c.faces)
        self.stats.unassigned = len(c.pool)
        self.stats.folded_to = self.folded_to

    async def run(self, stop: asyncio.Event) -> None:
        await self.fold()
        log.info(
            "people: state from the log to seq %d: %d faces, %d people",
            self.folded_to, self.stats.faces, self.stats.people,
        )  # fmt: skip
        await super().run(stop)

    async def _handle(self, event: Event, seq: int) -> list[Event]:
        c = self.clusterer
        if isinstance(event, FacesDetected):
            pending = c.faces_of(event)  # already known when folded: then only re-placed
            while pending:
                fid = c.next_to_place(pending)  # nearest first, see Clusterer.add
                pending.remove(fid)
                decided = c.place(fid)
                for ev in decided:  # published before applied: a failed publish retries
                    await self.event_log.publish(ev.model_copy(update={"causation": seq}))
                    self.stats.published += 1
                for ev in decided:
                    c.apply(ev)
        elif seq > self.folded_to:
            c.apply(event)
        self._count()
        return []
