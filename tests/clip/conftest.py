from __future__ import annotations

from pathlib import Path

import pytest

from tests.clip.tiny import make_tiny_clip


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different tiny models (colours on other dimensions), built once."""
    base = tmp_path_factory.mktemp("clip-models")
    return make_tiny_clip(base / "tiny-a"), make_tiny_clip(base / "tiny-b", variant=1)
