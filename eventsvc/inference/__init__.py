"""Inference back-ends (CLIP, faces) behind one protocol: in-process or over HTTP."""
