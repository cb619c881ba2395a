"""Library health: a missing mount is not a missing file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["probe"]


def probe(root: Path, known_files: int) -> str | None:
    """None if the library looks online, else the reason it is stale."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return f"root {root} does not exist"
    except OSError as exc:
        return f"root {root} cannot be read: {exc.strerror or exc}"
    if not stat.S_ISDIR(st.st_mode):
        return f"root {root} is not a directory"
    try:
        with os.scandir(root) as it:
            empty = next(it, None) is None
    except OSError as exc:
        return f"root {root} cannot be listed: {exc.strerror or exc}"
    if empty and known_files > 0:
        return f"root {root} is empty but {known_files} files were known (unmounted?)"
    return None
