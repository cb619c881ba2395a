"""KnownFiles (issue 18): the scanner's packed mapping behaves exactly as the dict it
replaces, under random changes, packing, hash collisions and odd file ids."""

from __future__ import annotations

import random

import pytest

from eventsvc.scanner import known as known_mod
from eventsvc.scanner.known import Known, KnownFiles


def _fid(rnd: random.Random) -> str:
    return rnd.getrandbits(128).to_bytes(16, "big").hex()


def _check(k: KnownFiles, model: dict[bytes, Known]) -> None:
    assert len(k) == len(model)
    assert dict(k.items()) == model and k == model
    assert sorted(k) == sorted(model)
    for rel, want in model.items():
        assert k[rel] == want and k.get(rel) == want and rel in k
        assert k.unchanged(rel, want[1], want[2])
        assert not k.unchanged(rel, want[1] + 1, want[2])


def _churn(seed: int, n: int) -> None:
    rnd = random.Random(seed)
    rels = [f"d{i % 7}/IMG_{i:05d}.jpg".encode() for i in range(n)] + [b"\xff\xfe raw"]
    model: dict[bytes, Known] = {
        r: (_fid(rnd), rnd.randrange(1 << 40), rnd.randrange(-(1 << 62), 1 << 62), i)
        for i, r in enumerate(rels[: n // 2])
    }
    k = KnownFiles(model.items())
    _check(k, model)
    for step in range(3 * n):
        rel = rnd.choice(rels)
        op = rnd.random()
        if op < 0.5:
            val = (_fid(rnd), rnd.randrange(1 << 40), rnd.randrange(1 << 62), step)
            k[rel] = model[rel] = val
        elif op < 0.8:
            old = model.pop(rel, None)
            assert k.pop(rel, None) == old
            if old is not None:  # a removed file is not "unchanged" any more
                assert not k.unchanged(rel, old[1], old[2])
        else:
            assert k.get(rel) == model.get(rel)
            assert (rel in k) == (rel in model)
            with pytest.raises(KeyError):
                _ = k[b"never/seen.jpg"]
        if step % 97 == 0:
            k.maybe_pack()
        if step % 311 == 0:
            _check(k, model)
            k.pack()
            _check(k, model)
    _check(k, model)
    assert k.keys() - set(rels[:10]) == model.keys() - set(rels[:10])  # a full scan's missing


def test_same_as_a_dict_under_random_changes() -> None:
    _churn(1, 600)


def test_same_as_a_dict_when_every_path_collides(monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths are told apart by their bytes, not by their hash: with a hash of 3 values
    # every lookup walks a long run of equal hashes and must still find the right one.
    monkeypatch.setattr(known_mod, "_path_hash", lambda rel: len(rel) % 3)
    _churn(2, 200)


def test_file_ids_of_another_width_and_empty_state() -> None:
    k = KnownFiles()
    assert len(k) == 0 and k.get(b"a.jpg") is None and list(k) == [] and k == {}
    k[b"a.jpg"] = ("ab" * 16, 1, 2, 3)
    k.pack()
    k[b"a.jpg"] = ("legacy-" + "c" * 40, 4, 5, 6)  # wider than the packed ids
    k[b"b.jpg"] = ("short", 7, 8, 9)
    assert k[b"a.jpg"] == ("legacy-" + "c" * 40, 4, 5, 6) and len(k) == 2
    k.pack()
    assert dict(k.items()) == {
        b"a.jpg": ("legacy-" + "c" * 40, 4, 5, 6),
        b"b.jpg": ("short", 7, 8, 9),
    }
    k.clear()
    assert len(k) == 0 and b"a.jpg" not in k


def test_packed_is_small() -> None:
    rnd = random.Random(3)
    n = 20_000
    k = KnownFiles(
        (f"2024/{i // 100:03d}/IMG_{i:05d}.jpg".encode(), (_fid(rnd), i, i, i)) for i in range(n)
    )
    path = len(b"2024/000/IMG_00000.jpg")
    # 5 x 8 B of numbers, ~8 B of buckets, 32 B of file id, 1 B flag, the path itself
    assert k.nbytes() / n < path + 90
