"""``eventsvc inference``: a small Litestar service exposing in-process back-ends over
HTTP (wire format in :mod:`eventsvc.core.inference`), so inference can run on a GPU
host (onnxruntime's CUDA provider is used there when installed) while workers run
elsewhere."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Body

from eventsvc.core.errors import BadInput, InferenceError, ModelUnavailable
from eventsvc.core.inference import ClipBackend, FaceBackend
from eventsvc.core.logs import litestar_logging
from eventsvc.core.settings import Settings
from eventsvc.inference.faces_http import FacesInferenceController
from eventsvc.inference.wire import MAX_ITEMS, decode_images, error_response, prestart_decoder
from eventsvc.media.sandbox import DecodeSandbox, shared_sandbox

try:  # litestar >= 2.23: say explicitly that back-ends are injected by name
    from litestar.di import NamedDependency
except ImportError:  # pragma: no cover - older litestar infers it
    NamedDependency = None  # type: ignore[assignment,misc]

__all__ = ["Backend", "ClipInferenceController", "create_inference_app"]

Backend = NamedDependency[Any] if NamedDependency is not None else Any
"""How handlers declare ``clip_backend`` / ``faces_backend`` (None when not configured)
and ``decoder`` (the service's decode sandbox, made from the settings it was given)."""
JsonBody = Annotated[dict[str, Any], Body()]


def _handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return error_response(exc)


def _need(backend: Any, task: str) -> Any:
    if backend is None:
        raise ModelUnavailable(f"this inference service has no {task} back-end")
    return backend


class ClipInferenceController(Controller):
    path = "/v1/clip"

    @post("/images", status_code=200)
    async def images(
        self, clip_backend: Backend, decoder: Backend, data: JsonBody
    ) -> dict[str, Any]:
        backend = _need(clip_backend, "clip")
        imgs = decode_images(data.get("images"), decoder)
        vectors = await backend.encode_images(imgs)
        info = await backend.info()
        return {"model": info.to_json(), "vectors": vectors.tolist()}

    @post("/texts", status_code=200)
    async def texts(self, clip_backend: Backend, data: JsonBody) -> dict[str, Any]:
        backend = _need(clip_backend, "clip")
        texts = data.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise BadInput("'texts' must be a non-empty list of strings")
        if len(texts) > MAX_ITEMS:
            raise BadInput(f"at most {MAX_ITEMS} texts per request")
        vectors = await backend.encode_texts(texts)
        info = await backend.info()
        return {"model": info.to_json(), "vectors": vectors.tolist()}


@get("/v1/info")
async def info(clip_backend: Backend, faces_backend: Backend) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task, backend in (("clip", clip_backend), ("faces", faces_backend)):
        if backend is None:
            out[task] = {"error": f"no {task} back-end configured"}
            continue
        try:
            out[task] = (await backend.info()).to_json()
        except InferenceError as exc:
            out[task] = {"error": str(exc)}
    return out


def create_inference_app(
    settings: Settings, *, clip: ClipBackend | None, faces: FaceBackend | None
) -> Litestar:
    state = State({"clip": clip, "faces": faces})
    sandbox = shared_sandbox(settings)  # the settings given, never built again here

    def provide_decoder() -> DecodeSandbox:
        return sandbox

    def provide_clip(state: State) -> Any:
        return state.clip

    def provide_faces(state: State) -> Any:
        return state.faces

    async def close(_: Litestar) -> None:
        for backend in (clip, faces):
            if backend is not None:
                await backend.aclose()

    return Litestar(
        logging_config=litestar_logging(),
        route_handlers=[
            info,
            ClipInferenceController,
            FacesInferenceController,
        ],
        dependencies={
            "clip_backend": Provide(provide_clip, sync_to_thread=False),
            "faces_backend": Provide(provide_faces, sync_to_thread=False),
            "decoder": Provide(provide_decoder, sync_to_thread=False),
        },
        exception_handlers={InferenceError: _handler},  # type: ignore[dict-item]
        on_startup=[lambda _app: prestart_decoder(sandbox)],
        on_shutdown=[close],
        state=state,
        request_max_body_size=256 * 1024 * 1024,
    )
