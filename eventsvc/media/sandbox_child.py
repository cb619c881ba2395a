"""The decode sandbox's child process, and the framing both sides speak.

Started by :mod:`eventsvc.media.sandbox` as ``python -c`` with a connected UNIX socket.
It ties its life to the parent (``PR_SET_PDEATHSIG``; it also exits on EOF), imports
Pillow, numpy and pillow-heif, caps its own address space (``RLIMIT_AS``), says hello,
then serves one request at a time. A request names a job and carries either a file
descriptor (``SCM_RIGHTS``) or the bytes to decode; the reply is plain data (a JSON
header and raw byte blobs, never pickle), so a decoder subverted by a hostile file has
no way to run code in the parent. Every job is also bounded by ``alarm()``: a child its
parent failed to kill dies by itself.

Frame: ``!II`` (JSON length, blob length), the JSON header, the blob bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import struct
import sys
from typing import Any

__all__ = ["EXIT_MEMORY", "main", "recv_frame", "send_frame"]

EXIT_MEMORY = 3
"""Exit status of a child that ran out of memory (it replies first when it can)."""

_HEAD = struct.Struct("!II")
_MAX_JSON = 1 << 20


def send_frame(
    sock: socket.socket, header: dict[str, Any], blobs: list[bytes] = (), fd: int | None = None
) -> None:  # type: ignore[assignment]
    body = json.dumps(header, separators=(",", ":")).encode()
    total = sum(len(b) for b in blobs)
    first = _HEAD.pack(len(body), total) + body
    if fd is not None:
        sent = socket.send_fds(sock, [first], [fd])
        if sent < len(first):
            sock.sendall(first[sent:])
    else:
        sock.sendall(first)
    for blob in blobs:
        sock.sendall(blob)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError("the other end closed the connection")
        got += k
    return bytes(buf)


def recv_frame(
    sock: socket.socket, *, with_fds: bool = False, max_blob: int | None = None
) -> tuple[dict[str, Any], bytes, list[int]]:
    """(header, blob bytes, received fds). Raises EOFError on a closed connection and
    ValueError on a frame over the limits (a peer we do not trust cannot make us
    allocate more than ``max_blob`` bytes)."""
    fds: list[int] = []
    if with_fds:
        data, fds, _flags, _addr = socket.recv_fds(sock, _HEAD.size, 4)
        if not data:
            for fd in fds:
                os.close(fd)
            raise EOFError("the other end closed the connection")
        if len(data) < _HEAD.size:
            data += _recv_exact(sock, _HEAD.size - len(data))
    else:
        data = _recv_exact(sock, _HEAD.size)
    jlen, blen = _HEAD.unpack(data)
    if jlen > _MAX_JSON:
        raise ValueError(f"frame header of {jlen} bytes")
    if max_blob is not None and blen > max_blob:
        raise ValueError(f"frame of {blen} bytes, over {max_blob}")
    header = json.loads(_recv_exact(sock, jlen))
    blob = _recv_exact(sock, blen) if blen else b""
    return header, blob, fds


# ------------------------------------------------------------------ child side


def _die_with_parent(ppid: int) -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != ppid:  # the parent died before prctl took effect
        os._exit(1)


def _vm_kb(field: str = "VmSize") -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


_MEMORY_WORDS = ("out of memory", "insufficient memory", "bad_alloc", "cannot allocate memory",
                 "memory allocation", "memoryerror")  # fmt: skip


def classify(exc: BaseException) -> str:
    """'memory', 'budget' or 'undecodable' for an exception (its whole chain)."""
    from eventsvc.media.thumbs import BudgetExceeded

    seen: set[int] = set()
    cur: BaseException | None = exc
    kind = "undecodable"
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, MemoryError):
            return "memory"
        if isinstance(cur, BudgetExceeded):
            kind = "budget"
        text = f"{type(cur).__name__}: {cur}".lower()
        if any(w in text for w in _MEMORY_WORDS):
            return "memory"
        cur = cur.__cause__ or cur.__context__
    return kind


def _array_reply(img: Any) -> tuple[dict[str, Any], list[bytes]]:
    import numpy as np

    arr = np.ascontiguousarray(np.asarray(img.convert("RGB") if img.mode != "RGB" else img))
    return {"ok": True, "shape": list(arr.shape)}, [arr.tobytes()]


def _handle(op: str, args: dict[str, Any], source: Any) -> tuple[dict[str, Any], list[bytes]]:
    from eventsvc.media import decode

    max_pixels = args.get("max_pixels")
    raw = bool(args.get("raw"))
    if op in ("thumbs", "video"):
        if op == "video":
            img = decode.video_thumb_image(source, max_pixels=max_pixels)
        else:
            img = decode.thumb_image(source, raw=raw, max_pixels=max_pixels)
        ts = decode.thumbnail_set(img)
        del img
        names = list(ts.jpegs)
        head = {"ok": True, "names": names, "width": ts.width, "height": ts.height,
                "phash": ts.phash, "dhash": ts.dhash}  # fmt: skip
        return head, [ts.jpegs[n] for n in names]
    if op == "faces":
        return _array_reply(decode.faces_image(source, int(args["max_edge"]), raw=raw,
                                               max_pixels=max_pixels))  # fmt: skip
    if op == "clip":
        return _array_reply(decode.clip_image(source, int(args["max_edge"]), raw=raw,
                                              max_pixels=max_pixels))  # fmt: skip
    if op == "wire":
        return _array_reply(decode.wire_image(source, max_pixels=max_pixels))
    if op == "exif":
        import dataclasses

        from eventsvc.media import exif

        # Re-opened through /proc: a new open file (own offset) of the very same inode.
        path = f"/proc/self/fd/{source}" if isinstance(source, int) else None
        if path is None or not os.path.exists(path):
            raise ValueError("EXIF extraction needs a file descriptor (and /proc)")
        facts = exif.extract_video(path) if args.get("video") else exif.extract_image(path)
        return {"ok": True, "facts": dataclasses.asdict(facts)}, []
    if op == "ping":
        return {"ok": True, "pid": os.getpid(), "vm_hwm_kb": _vm_kb("VmHWM")}, []
    raise ValueError(f"unknown decode job {op!r}")


def _serve(sock: socket.socket, alarm_s: int) -> None:
    while True:
        try:
            req, blob, fds = recv_frame(sock, with_fds=True)
        except (EOFError, OSError):
            return
        signal.alarm(alarm_s)
        source: Any = fds[0] if fds else io.BytesIO(blob)
        out_of_memory = False
        try:
            head, blobs = _handle(str(req.get("op")), dict(req.get("args") or {}), source)
        except BaseException as exc:  # everything becomes a reply: the parent decides
            kind = classify(exc)
            out_of_memory = kind == "memory"
            text = str(exc) if kind == "budget" else f"{type(exc).__name__}: {exc}"
            head, blobs = {"ok": False, "kind": kind, "error": text[:500]}, []
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            del source, blob
        head["vm_hwm_kb"] = _vm_kb("VmHWM")
        head["lengths"] = [len(b) for b in blobs]
        try:
            send_frame(sock, head, blobs)
        except (MemoryError, OSError):
            os._exit(EXIT_MEMORY if out_of_memory else 1)
        signal.alarm(0)
        if out_of_memory:  # the heap may be fragmented or half-freed: start afresh
            os._exit(EXIT_MEMORY)


def main(argv: list[str]) -> None:
    sock_fd, ppid, memory_mb, alarm_s = (int(v) for v in argv[:4])
    _die_with_parent(ppid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C goes to the parent, which ends us
    sock = socket.socket(fileno=sock_fd)
    import numpy  # noqa: F401
    from PIL import Image

    from eventsvc.media import decode, thumbs  # noqa: F401
    from eventsvc.media.heif import register_heif

    register_heif()
    import imagehash

    imagehash.phash(Image.new("L", (32, 32)))  # warm: scipy's FFT, imported on first use
    Image.MAX_IMAGE_PIXELS = None  # our header budget is authoritative (and our limits)
    baseline = _vm_kb()
    if memory_mb > 0:
        import resource

        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    send_frame(sock, {"hello": True, "pid": os.getpid(), "vm_kb": baseline})
    _serve(sock, alarm_s)
    sys.exit(0)
