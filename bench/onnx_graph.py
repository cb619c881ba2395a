"""A small helper for the benchmarks' random-weight ONNX graphs (no torch needed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["GraphBuilder"]


class GraphBuilder:
    """Collects nodes and random initialisers; ``width`` is the LayerNorm width."""

    def __init__(self, rng: np.random.Generator, width: int) -> None:
        self.rng = rng
        self.width = width
        self.inits: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []

    def w(self, name: str, *shape: int, scale: float = 0.02) -> str:
        data = (self.rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)
        self.inits.append(numpy_helper.from_array(data, name))
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, ins: list[str], out: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def ln(self, x: str, name: str) -> str:
        g = self.const(f"{name}.g", np.ones(self.width, np.float32))
        b = self.const(f"{name}.b", np.zeros(self.width, np.float32))
        return self.node("LayerNormalization", [x, g, b], f"{name}.out", axis=-1, epsilon=1e-5)

    def linear(self, x: str, name: str, n_in: int, n_out: int) -> str:
        y = self.node("MatMul", [x, self.w(f"{name}.w", n_in, n_out)], f"{name}.mm")
        b = self.const(f"{name}.b", np.zeros(n_out, np.float32))
        return self.node("Add", [y, b], f"{name}.out")
