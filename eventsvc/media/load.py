"""One way for a worker to get an upright RGB image to analyse (faces, CLIP): decoded in
the decode sandbox when the caller has one, else in this process (tests, benchmarks)."""

from __future__ import annotations

import os
from typing import Literal

from PIL import Image

from eventsvc.core.ids import RAW_EXTENSIONS
from eventsvc.media import decode
from eventsvc.media.sandbox import DecodeSandbox
from eventsvc.media.source import Source

__all__ = ["load_upright"]


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
        raw = isinstance(source, str | os.PathLike) and (
            os.path.splitext(os.fspath(source))[1].lower() in RAW_EXTENSIONS
        )
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
