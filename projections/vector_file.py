"""The vector index on disk, so a restart does not re-index: one file per generation.

``<readmodel_dir>/vectors/gen-NNNNNN.vindex`` holds every model of that generation and
the last ``clip_vectors.seq`` folded in; a loader reads it, then pulls only the rows
above that seq. Written to a temporary name, fsynced and renamed over the old file, so
several ``eventsvc api`` processes on one data dir may save at once and a reader only
ever sees a whole file; a file that does not parse is ignored (the index is rebuilt
from the read model). Layout: sections of raw bytes, then a JSON footer describing them,
its length (8 bytes, little-endian) and ``MAGIC``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from projections.vector_keys import WIDTH, HashKeys
from projections.vector_model import ModelMatrix

__all__ = ["MAGIC", "file_for", "load", "prune", "save", "saved"]

log = logging.getLogger(__name__)

MAGIC = b"EVVINDEX1"
FORMAT = 1


def file_for(generation: Path) -> Path:
    return generation.parent / "vectors" / f"{generation.stem}.vindex"


def _write_array(f: BinaryIO, arr: np.ndarray) -> dict[str, Any]:
    at = f.tell()
    f.write(np.ascontiguousarray(arr).tobytes())
    return {"at": at, "len": f.tell() - at, "dtype": arr.dtype.str, "shape": list(arr.shape)}


def _read_array(f: BinaryIO, d: dict[str, Any]) -> np.ndarray:
    f.seek(int(d["at"]))
    raw = f.read(int(d["len"]))
    if len(raw) != int(d["len"]):
        raise ValueError("truncated")
    return np.frombuffer(raw, np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def save(generation: Path, models: dict[str, ModelMatrix], last_seq: int) -> Path:
    """Write every model and ``last_seq`` for ``generation`` (atomically)."""
    target = file_for(generation)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as f:
            entries = []
            for m in models.values():
                keys, perm = m.keys.state()
                e: dict[str, Any] = {
                    "version": m.version, "dim": m.dim, "n": m.n, "first_seq": m.first_seq,
                    "last_seq": m.last_seq, "keys": _write_array(f, keys),
                    "perm": _write_array(f, perm),
                }  # fmt: skip
                if m.ivf is None:
                    e["matrix"] = _write_array(f, m.matrix)
                else:
                    import faiss

                    at = f.tell()
                    with m.lock:
                        faiss.write_index(m.ivf, faiss.PyCallbackIOWriter(f.write))
                    e["faiss"] = {"at": at, "len": f.tell() - at}
                entries.append(e)
            meta = {"format": FORMAT, "generation": generation.name, "last_seq": last_seq}
            footer = json.dumps({**meta, "models": entries}).encode()
            f.write(footer)
            f.write(len(footer).to_bytes(8, "little"))
            f.write(MAGIC)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def load(
    generation: Path,
    *,
    ann_min: int,
    nprobe: int,
    rerank: float = 1.5,
    source: Path | None = None,
) -> tuple[dict[str, ModelMatrix], int] | None:
    """The models and last seq saved for ``generation``; None when there is no usable file."""
    path = file_for(generation)
    try:
        f = open(path, "rb")
    except OSError:
        return None
    try:
        with f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(size - len(MAGIC) - 8)
            tail = f.read(8 + len(MAGIC))
            if tail[8:] != MAGIC:
                raise ValueError("not a vector index file")
            flen = int.from_bytes(tail[:8], "little")
            f.seek(size - len(MAGIC) - 8 - flen)
            footer = json.loads(f.read(flen))
            if footer.get("format") != FORMAT or footer.get("generation") != generation.name:
                raise ValueError("another format or generation")
            models: dict[str, ModelMatrix] = {}
            for e in footer["models"]:
                m = ModelMatrix(
                    e["version"], int(e["dim"]), ann_min=ann_min, nprobe=nprobe, rerank=rerank
                )
                keys = _read_array(f, e["keys"])
                if keys.dtype.itemsize != WIDTH:
                    raise ValueError("key width")
                m.set_keys(HashKeys.restore(keys, _read_array(f, e["perm"])))
                m.n, m.first_seq, m.last_seq = int(e["n"]), int(e["first_seq"]), int(e["last_seq"])
                if "matrix" in e:
                    m.set_matrix(_read_array(f, e["matrix"]).astype(np.float32, copy=False))
                else:
                    import faiss

                    f.seek(int(e["faiss"]["at"]))
                    m.ivf = faiss.read_index(faiss.PyCallbackIOReader(f.read))
                    if m.ivf.ntotal != m.n:
                        raise ValueError("faiss index and keys differ")
                if len(m.keys) != m.n:
                    raise ValueError("keys and rows differ")
                m.source = source or generation
                models[m.version] = m
            return models, int(footer["last_seq"])
    except Exception as exc:  # any damage: rebuild from the read model
        log.warning("vector index: ignoring %s: %r", path, exc)
        return None


def saved(directory: Path) -> list[Path]:
    """The generations (paths of their .db, present or not) with a saved index, newest first."""
    vdir = directory / "vectors"
    if not vdir.is_dir():
        return []
    gens = sorted(p.stem for p in vdir.glob("gen-*.vindex"))
    return [directory / f"{g}.db" for g in reversed(gens)]


def prune(directory: Path, keep: set[str]) -> None:
    """Remove saved indexes (and stale temporaries) of generations not in ``keep``."""
    vdir = directory / "vectors"
    if not vdir.is_dir():
        return
    for p in vdir.iterdir():
        if p.suffix == ".vindex" and p.stem not in keep:
            with contextlib.suppress(OSError):
                p.unlink()
