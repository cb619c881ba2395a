"""Moved to :mod:`eventsvc.core.inference` (issue 15: the read side knows the protocol, not
the back-ends). This re-export serves code written against the old name (the derivers);
new code imports :mod:`eventsvc.core.inference`."""

from eventsvc.core.inference import ClipBackend, DetectedFace, FaceBackend, ModelInfo

__all__ = ["ClipBackend", "DetectedFace", "FaceBackend", "ModelInfo"]
