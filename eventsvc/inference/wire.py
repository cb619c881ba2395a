"""The HTTP wire format's pieces shared by the service and its clients: images as
base64 JPEG/PNG, and inference errors as JSON answers (see :mod:`.protocol`)."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from litestar import Response
from PIL import Image

from eventsvc.core.errors import BackendUnavailable, BadInput, ModelUnavailable, TransientError
from eventsvc.media.sandbox import DecodeFailed, DecodeSandbox

__all__ = ["MAX_ITEMS", "decode_images", "encode_image", "error_response", "prestart_decoder"]

MAX_ITEMS = 256
"""Images or texts per request."""


def encode_image(img: Image.Image, quality: int = 95) -> str:
    """Base64 of a JPEG of the upright RGB image."""
    buf = io.BytesIO()
    (img if img.mode == "RGB" else img.convert("RGB")).save(buf, "JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_images(items: Any, sandbox: DecodeSandbox) -> list[Image.Image]:
    """Base64 JPEG/PNG strings -> RGB images; BadInput names the first bad one.

    Decoded in ``sandbox`` (the service's, from its settings' EVENTSVC_DECODE_* limits):
    within the pixel budget, memory and time limits, as for library files."""
    if not isinstance(items, list) or not items:
        raise BadInput("'images' must be a non-empty list of base64 strings")
    if len(items) > MAX_ITEMS:
        raise BadInput(f"at most {MAX_ITEMS} images per request")
    box = sandbox
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise BadInput(f"image {i} is not a base64 string", index=i)
        try:
            data = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadInput(f"image {i} is not base64: {exc}", index=i) from exc
        try:
            out.append(Image.fromarray(box.wire_image(data)))
        except DecodeFailed as exc:
            raise BadInput(f"image {i} cannot be decoded: {exc}", index=i) from exc
        except TransientError as exc:
            raise BackendUnavailable(f"no image decoder available: {exc}") from exc
    return out


def prestart_decoder(sandbox: DecodeSandbox) -> None:
    """Start the sandbox's decoder process now, in the background (a service calls it at
    startup, so the first upload does not wait for one)."""
    sandbox.prestart(1)


def error_response(exc: Exception) -> Response[Any]:
    """503 model_unavailable, 422 bad_input (with the item's index), else 500."""
    if isinstance(exc, ModelUnavailable):
        return Response({"detail": str(exc), "code": "model_unavailable"}, status_code=503)
    if isinstance(exc, BadInput):
        body: dict[str, Any] = {"detail": str(exc), "code": "bad_input"}
        if exc.index is not None:
            body["index"] = exc.index
        return Response(body, status_code=422)
    return Response({"detail": str(exc), "code": "inference_error"}, status_code=500)
