"""The one image loader: an upright RGB image to analyse (faces, CLIP, a face crop's
source), decoded in the decode sandbox when the caller has one, else in this process
(tests, benchmarks). :func:`load_hashed` loads the image a HashComputed names, from its
configured root, still the bytes that were hashed."""

from __future__ import annotations

import os
from typing import Literal

from PIL import Image

from eventsvc.core.errors import PermanentError, TransientError
from eventsvc.core.events import HashComputed
from eventsvc.core.ids import RAW_EXTENSIONS
from eventsvc.core.roots import LibraryRoots
from eventsvc.media import decode
from eventsvc.media.sandbox import DecodeFailed, DecodeSandbox
from eventsvc.media.source import Source

__all__ = ["is_raw", "load_hashed", "load_upright"]


def is_raw(path: str | bytes | os.PathLike[str] | None) -> bool:
    """Whether a path names a camera RAW file (judged from its extension)."""
    if path is None:
        return False
    name = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
    return os.path.splitext(name)[1].lower() in RAW_EXTENSIONS


def load_upright(
    kind: Literal["faces", "clip"],
    source: Source,
    max_edge: int,
    *,
    raw: bool | None = None,
    sandbox: DecodeSandbox | None = None,
) -> Image.Image:
    """Upright RGB for ``kind`` (``faces``: long edge at most ``max_edge``; ``clip``: at
    most twice that, for the model's own resize); RAW through its embedded preview
    (``raw`` None: judged from a path's extension). With a ``sandbox``, decoded in its
    child process within its pixel, memory and time limits (``DecodeFailed``)."""
    if raw is None:
        raw = isinstance(source, str | os.PathLike) and is_raw(source)
    if sandbox is None:
        local = decode.faces_image if kind == "faces" else decode.clip_image
        return local(source, max_edge, raw=raw, max_pixels=None)
    remote = sandbox.faces_image if kind == "faces" else sandbox.clip_image
    if isinstance(source, str | os.PathLike):
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return Image.fromarray(remote(fd, max_edge, raw=raw))
        finally:
            os.close(fd)
    return Image.fromarray(remote(source, max_edge, raw=raw))


def load_hashed(
    kind: Literal["faces", "clip"],
    roots: LibraryRoots,
    event: HashComputed,
    max_edge: int,
    *,
    purpose: str,
    sandbox: DecodeSandbox | None = None,
) -> Image.Image:
    """:func:`load_upright` of the file ``event`` names, opened under its configured root
    and unchanged since hashed (:meth:`LibraryRoots.open_hashed`). A decoder that is not to
    be had now stays a TransientError; a limit hit a DecodeFailed, anything else that does
    not decode a PermanentError, both saying "cannot decode for ``purpose``"."""
    fd = roots.open_hashed(event, "analysis" if kind == "faces" else "CLIP encoding")
    try:
        return load_upright(kind, fd, max_edge, raw=is_raw(event.path), sandbox=sandbox)
    except TransientError:
        raise  # no decoder process to be had right now: retried later
    except DecodeFailed as exc:  # over a limit: recorded with the sandbox's reason
        raise DecodeFailed(exc.kind, f"cannot decode for {purpose}: {exc}"[:500]) from exc
    except Exception as exc:  # undecodable: recorded, never retried forever
        raise PermanentError(
            f"cannot decode for {purpose}: {type(exc).__name__}: {exc}"[:500]
        ) from exc
    finally:
        os.close(fd)
