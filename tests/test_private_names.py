"""No module imports another module's private (``_name``) names: what a module shares is public
(and in its ``__all__``); what starts with an underscore stays inside its module."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("eventsvc", "projections", "bench")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def private_uses(path: Path) -> list[str]:
    """Every ``from m import _x``, ``import m._x`` and ``mod._x`` (``mod`` one of ours,
    imported as a module) in one file, as "line: text"."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    modules: set[str] = set()  # local names bound to one of our modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            ours = node.module.split(".")[0] in PACKAGES
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
                elif ours and _is_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(_private(part) for part in alias.name.split(".")):
                    found.append(f"{node.lineno}: import {alias.name}")
                elif alias.name.split(".")[0] in PACKAGES and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    offenders = {
        str(path.relative_to(ROOT)): uses
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (uses := private_uses(path))
    }
    assert offenders == {}


def test_the_scan_finds_each_kind_of_private_use(tmp_path: Path) -> None:
    """The scanner itself can fail: each form it looks for is found."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from projections.api.photos import _IMMUTABLE\n"
        "import eventsvc.media._hidden\n"
        "from projections.api import photos\n"
        "photos._IMMUTABLE\n"
        "photos.check_hash\n"
        "from projections.api.photos import check_hash as _check\n"
    )
    assert private_uses(probe) == [
        "1: from projections.api.photos import _IMMUTABLE",
        "2: import eventsvc.media._hidden",
        "4: photos._IMMUTABLE",
    ]
