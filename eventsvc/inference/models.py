"""Resolving a CLIP model to a local directory in the Immich layout, and building the
back-end the settings ask for (HTTP to ``eventsvc inference``, or ONNX in-process).

A model is named by a local directory, or by a Hugging Face hub id such as
``immich-app/ViT-B-32__openai``, fetched with ``huggingface_hub.snapshot_download``
into ``<data_dir>/models/<id>`` on first use. Offline with no files there: the error
says both ways to fix it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from eventsvc.core.errors import ModelUnavailable
from eventsvc.core.events import subject_token
from eventsvc.core.inference import ClipBackend, FaceBackend
from eventsvc.core.logs import Repeats, sentence_cut
from eventsvc.core.settings import Settings

__all__ = [
    "REQUIRED_FILES",
    "ConfiguredClip",
    "clip_backend",
    "face_backend",
    "known_model_specs",
    "remember_model",
    "resolve_model_dir",
]

log = logging.getLogger(__name__)
_repeats = Repeats(log)  # a download retried at every model recheck: logged once, counted

REQUIRED_FILES = (
    "config.json",
    "visual/model.onnx",
    "textual/model.onnx",
    "textual/tokenizer.json",
)
_PATTERNS = [
    "config.json",
    "visual/model.onnx",
    "visual/preprocess_cfg.json",
    "textual/model.onnx",
    "textual/*.json",
]
_REGISTRY = "registry.json"


def _complete(d: Path) -> bool:
    return all((d / f).is_file() for f in REQUIRED_FILES)


def _how_to_fix(spec: str) -> str:
    return (
        f"with internet access, the first use downloads {spec!r} into the data dir's "
        "models/ folder (unset HF_HUB_OFFLINE); without it, copy a model in the Immich "
        "layout (config.json, visual/model.onnx, visual/preprocess_cfg.json, "
        "textual/model.onnx, textual/tokenizer.json) to a directory and set "
        "EVENTSVC_CLIP_MODEL_DIR to it"
    )


def resolve_model_dir(spec: str, models_dir: Path, *, download: bool = True) -> Path:
    """A local directory holding the model ``spec`` (a directory, or a hub id)."""
    local = Path(spec).expanduser()
    if local.is_dir() or spec.startswith(("/", ".", "~")):
        if _complete(local):
            return local
        raise ModelUnavailable(
            f"CLIP model directory {local} is missing or incomplete (needs "
            f"{', '.join(REQUIRED_FILES)})"
        )
    target = models_dir / subject_token(spec.replace("/", "--"))
    if _complete(target):
        return target
    if not download:
        raise ModelUnavailable(f"CLIP model {spec!r} is not in {target}; {_how_to_fix(spec)}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ModelUnavailable(
            f"CLIP model {spec!r} is not in {target} and huggingface_hub is not installed "
            f"(pip install 'eventsvc[clip]'); {_how_to_fix(spec)}"
        ) from exc
    key = ("download", spec)
    _repeats.log(logging.INFO, key, "clip: downloading %s into %s (first use)", spec, target)
    try:
        snapshot_download(repo_id=spec, local_dir=str(target), allow_patterns=_PATTERNS)
    except Exception as exc:  # offline, unknown repo, network: huggingface_hub's own types
        raise ModelUnavailable(  # whole sentences: this is the 503's reason
            f"CLIP model {spec!r} could not be fetched ({type(exc).__name__}: "
            f"{sentence_cut(str(exc), 500)}); {_how_to_fix(spec)}"
        ) from exc
    _repeats.clear(key)
    if not _complete(target):
        raise ModelUnavailable(f"the download of {spec!r} into {target} is incomplete")
    return target


def _name(spec: str) -> str:
    return Path(spec.rstrip("/")).name or spec


def clip_backend(settings: Settings, spec: str | None = None) -> ClipBackend:
    """The back-end for ``spec`` (default: the configured model). Nothing is loaded
    here: the first ``info()`` resolves (and maybe downloads) the model, raising
    ModelUnavailable when it cannot."""
    if spec is None and settings.clip_inference_url:
        from eventsvc.inference.http import HttpClip

        return HttpClip(
            settings.clip_inference_url,
            timeout=settings.inference_timeout,
            retries=settings.inference_retries,
        )
    return LazyOnnxClip(settings, spec)


class LazyOnnxClip:
    """OnnxClip whose directory is resolved on first use (and re-tried after failures)."""

    def __init__(self, settings: Settings, spec: str | None) -> None:
        self.settings = settings
        if spec is None:
            spec = str(settings.clip_model_dir) if settings.clip_model_dir else settings.clip_model
        self.spec = spec
        self._inner = None

    def _get(self):  # type: ignore[no-untyped-def]
        from eventsvc.inference.clip_onnx import OnnxClip

        if self._inner is None:
            d = resolve_model_dir(self.spec, self.settings.models_dir)
            self._inner = OnnxClip(d, name=_name(self.spec), threads=self.settings.clip_threads)
        return self._inner

    async def _inner_backend(self):  # type: ignore[no-untyped-def]
        import asyncio

        return await asyncio.to_thread(self._get)

    async def info(self):  # type: ignore[no-untyped-def]
        return await (await self._inner_backend()).info()

    async def encode_images(self, images):  # type: ignore[no-untyped-def]
        return await (await self._inner_backend()).encode_images(images)

    async def encode_texts(self, texts):  # type: ignore[no-untyped-def]
        return await (await self._inner_backend()).encode_texts(texts)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


def remember_model(settings: Settings, spec: str) -> None:
    """Note a model spec (used by ``reencode``) so API processes on this data dir can
    encode queries for it too."""
    path = settings.models_dir / _REGISTRY
    specs = known_model_specs(settings)
    if spec not in specs:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([*specs, spec]))
        tmp.replace(path)


def known_model_specs(settings: Settings) -> list[str]:
    """Specs besides the configured model: ``clip_extra_models`` and those remembered."""
    out = list(settings.clip_extra_models)
    try:
        data = json.loads((settings.models_dir / _REGISTRY).read_text())
    except (OSError, ValueError):
        data = []
    for s in data if isinstance(data, list) else []:
        if isinstance(s, str) and s not in out:
            out.append(s)
    return out


class ConfiguredClip:
    """The :class:`~eventsvc.core.inference.ClipBackends` of ``settings``: the configured
    model, then ``clip_extra_models`` and the models ``eventsvc reencode`` noted (read
    again on every call, so a reencode shows up without a restart)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def specs(self) -> list[str]:
        return ["", *known_model_specs(self.settings)]

    def open(self, spec: str) -> ClipBackend:
        return clip_backend(self.settings, spec or None)


def face_backend(settings: Settings) -> FaceBackend:
    """The configured face back-end: an inference service, else dlib in-process."""
    if settings.faces_inference_url:
        from eventsvc.inference.faces_http import HttpFaceBackend

        return HttpFaceBackend(settings.faces_inference_url)
    from eventsvc.inference.dlib_faces import DlibFaceBackend, DlibSettings

    return DlibFaceBackend(DlibSettings.from_settings(settings))
