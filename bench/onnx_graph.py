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

    def blocks(
        self, x: str, *, layers: int, tokens: int, heads: int, mask: str | None = None
    ) -> str:
        """``layers`` pre-LayerNorm transformer blocks (multi-head self-attention over
        ``tokens`` positions, ``mask`` added to the scores when given, then a QuickGELU
        MLP of 4x the width), each with residuals; returns the output's name."""
        node, ln, linear, width = self.node, self.ln, self.linear, self.width
        hd = width // heads
        heads_shape = self.const("hs", np.array([0, tokens, heads, hd], np.int64))
        merge_shape = self.const("ms", np.array([0, tokens, width], np.int64))
        scale = self.const("scale", np.array(1.0 / np.sqrt(hd), np.float32))
        for i in range(layers):
            p = f"l{i}"
            h = ln(x, f"{p}.ln1")
            qkv = []
            for part in ("q", "k", "v"):
                t = linear(h, f"{p}.{part}", width, width)
                t = node("Reshape", [t, heads_shape], f"{p}.{part}.r")
                qkv.append(node("Transpose", [t], f"{p}.{part}.t", perm=[0, 2, 1, 3]))
            kt = node("Transpose", [qkv[1]], f"{p}.kt", perm=[0, 1, 3, 2])
            att = node("Mul", [node("MatMul", [qkv[0], kt], f"{p}.qk"), scale], f"{p}.sc")
            if mask is not None:
                att = node("Add", [att, mask], f"{p}.masked")
            att = node("Softmax", [att], f"{p}.sm", axis=-1)
            o = node("MatMul", [att, qkv[2]], f"{p}.av")
            o = node("Transpose", [o], f"{p}.ot", perm=[0, 2, 1, 3])
            o = node("Reshape", [o, merge_shape], f"{p}.om")
            x = node("Add", [x, linear(o, f"{p}.proj", width, width)], f"{p}.res1")
            h = ln(x, f"{p}.ln2")
            h = linear(h, f"{p}.fc", width, width * 4)
            a = node("Mul", [h, self.const(f"{p}.a", np.array(1.702, np.float32))], f"{p}.ha")
            h = node("Mul", [h, node("Sigmoid", [a], f"{p}.sg")], f"{p}.gelu")  # QuickGELU
            x = node("Add", [x, linear(h, f"{p}.fc2", width * 4, width)], f"{p}.res2")
        return x
