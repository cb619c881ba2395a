"""HEIF/HEIC/AVIF still images (ISO-BMFF): recognising them and enabling their Pillow opener."""

from __future__ import annotations

__all__ = ["is_heif", "register_heif"]

# ISO-BMFF brands of still-image files (HEIF/HEIC/AVIF), major or compatible.
_HEIF_BRANDS = frozenset(
    b"heic heix heim heis hevc hevx hevm hevs mif1 mif2 msf1 heif avif avis".split()
)


def is_heif(head: bytes) -> bool:
    """True if ``head`` (the first few hundred bytes) is an ISO-BMFF still image."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return False
    size = int.from_bytes(head[0:4], "big")
    end = min(len(head), size if size >= 16 else 16)
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    return any(b in _HEIF_BRANDS for b in brands)


def register_heif() -> None:
    """Let Pillow open HEIF/HEIC/AVIF files (when pillow-heif is installed); idempotent."""
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()
