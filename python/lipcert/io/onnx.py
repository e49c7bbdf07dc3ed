"""ONNX import with the `onnx` package only: a walk over the graph in topological order.

Constant subgraphs (e.g. a weight computed in-graph by a spectral-norm parametrisation) are
evaluated with onnx's own reference implementation; every other node must transform the single
running tensor and is mapped by the table `DATA_OPS` to a layer or to an elementwise affine map that
`fold_affine` merges into a neighbouring Dense/Conv2d.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ..errors import InvalidNetworkError, UnsupportedLayerError
from ..layers import AvgPool2d, Conv2d, Dense, Flatten, LeakyReLU, ReLU, Sigmoid, Tanh
from ..network import Network
from .folding import ElementwiseAffine, fold_affine


class _Batch:
    """The symbolic batch dimension inside Shape -> Concat -> Reshape patterns."""

    def __repr__(self):
        return "batch"


BATCH = _Batch()


class _Importer:
    def __init__(self, model, path: str):
        import onnx
        from onnx import numpy_helper

        self.onnx = onnx
        self.path = path
        graph = model.graph
        self.consts: Dict[str, np.ndarray] = {}
        for init in graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        self.symbolic: Dict[str, list] = {}
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise UnsupportedLayerError(f"{path}: expected one network input, found {[i.name for i in inputs]}")
        dims = inputs[0].type.tensor_type.shape.dim
        shape = []
        for d in list(dims)[1:]:
            if not d.HasField("dim_value"):
                raise InvalidNetworkError(f"{path}: input {inputs[0].name!r} has a symbolic non-batch dimension "
                                          f"{d.dim_param!r}; export with a fixed input size")
            shape.append(int(d.dim_value))
        if len(shape) not in (1, 3):
            raise UnsupportedLayerError(f"{path}: input {inputs[0].name!r} must be (batch, n) or (batch, C, H, W), "
                                        f"got {len(shape) + 1} dimensions")
        self.input_shape = tuple(shape)
        self.current = inputs[0].name
        self.shape = tuple(shape)
        self.items: List = []
        self.outputs = [o.name for o in graph.output]

    # -- helpers -------------------------------------------------------------------------------
    def fail(self, node, why: str):
        raise UnsupportedLayerError(f"{self.path}: node {node.name or node.output[0]!r} ({node.op_type}): {why}")

    def attr(self, node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return self.onnx.helper.get_attribute_value(a)
        return default

    def const(self, name: str) -> Optional[np.ndarray]:
        return self.consts.get(name)

    def emit(self, node, item, shape):
        self.items.append(item)
        self.shape = tuple(shape)
        self.current = node.output[0]

    def passthrough(self, node):
        self.current = node.output[0]

    # -- the walk ------------------------------------------------------------------------------
    def run(self, nodes) -> Network:
        for node in nodes:
            inputs = [i for i in node.input if i]
            if all(i in self.consts for i in inputs):
                self.fold_constant(node)
            elif any(i in self.symbolic for i in inputs) and self.current not in inputs:
                self.fold_symbolic(node)
            else:
                data = [i for i in inputs if i not in self.consts and i not in self.symbolic]
                if data != [self.current]:
                    self.fail(node, "the graph branches or reuses an earlier tensor "
                                    "(only sequential networks are supported)")
                if node.op_type == "Shape":
                    self.shape_of(node)
                    continue
                handler = DATA_OPS.get(node.op_type)
                if handler is None:
                    self.fail(node, f"unsupported operator {node.op_type}; supported: {', '.join(sorted(DATA_OPS))}")
                handler(self, node)
        if self.outputs[0] != self.current:
            raise UnsupportedLayerError(f"{self.path}: the graph output {self.outputs[0]!r} is not computed by the "
                                        "sequential chain of nodes from the input")
        return Network(fold_affine(self.items, self.input_shape), self.input_shape,
                       {"source": self.path})

    def fold_constant(self, node):
        from onnx.reference import ReferenceEvaluator

        try:
            evaluator = ReferenceEvaluator(node)
            feeds = {i: self.consts[i] for i in node.input if i}
            results = evaluator.run(None, feeds)
        except Exception as e:  # the reference evaluator raises many kinds of errors
            self.fail(node, f"could not evaluate this constant node ({e})")
        for name, value in zip(node.output, results):
            self.consts[name] = np.asarray(value)

    def shape_of(self, node):
        full = [BATCH] + list(self.shape)
        start = self.attr(node, "start", 0)
        end = self.attr(node, "end", None)
        self.symbolic[node.output[0]] = full[start:end]

    def fold_symbolic(self, node):
        def value(name):
            if name in self.symbolic:
                return list(self.symbolic[name])
            return [int(v) for v in np.asarray(self.consts[name]).ravel()]

        op = node.op_type
        if op == "Concat":
            out = []
            for i in node.input:
                out += value(i)
        elif op == "Gather":
            idx = np.asarray(self.consts[node.input[1]])
            vals = value(node.input[0])
            out = [vals[int(k)] for k in idx.ravel()]
        elif op in ("Unsqueeze", "Squeeze", "Identity", "Cast"):
            out = value(node.input[0])
        else:
            self.fail(node, "unsupported operation on a tensor shape")
        self.symbolic[node.output[0]] = out


# -- data-path operators ---------------------------------------------------------------------------

def _gemm(im: _Importer, node):
    if len(im.shape) != 1:
        im.fail(node, f"expects a flat input, got shape {im.shape}")
    if node.input[0] != im.current or im.attr(node, "transA", 0):
        im.fail(node, "only Gemm(x, W, b) with the data as first input and transA=0 is supported")
    w = im.const(node.input[1])
    if w is None:
        im.fail(node, "weight is not constant")
    alpha, beta = im.attr(node, "alpha", 1.0), im.attr(node, "beta", 1.0)
    w = alpha * (w if im.attr(node, "transB", 0) else w.T)  # (out, in)
    b = np.zeros(w.shape[0])
    if len(node.input) > 2 and node.input[2]:
        b = beta * np.broadcast_to(im.const(node.input[2]), (1, w.shape[0]))[0]
    im.emit(node, Dense(w, b), (w.shape[0],))


def _matmul(im: _Importer, node):
    if len(im.shape) != 1 or node.input[0] != im.current:
        im.fail(node, "only MatMul(x, W) on a flat input with a constant W is supported")
    w = im.const(node.input[1])
    if w is None or w.ndim != 2:
        im.fail(node, "the right operand must be a constant matrix")
    im.emit(node, Dense(w.T, np.zeros(w.shape[1])), (w.shape[1],))


def _elementwise(im: _Importer, node):
    a, b = node.input[0], node.input[1]
    data_first = a == im.current
    c = im.const(b if data_first else a)
    try:
        c = np.broadcast_to(c, (1,) + im.shape)[0]
    except ValueError:
        im.fail(node, f"constant of shape {np.shape(im.const(b if data_first else a))} does not broadcast to {im.shape}")
    op = node.op_type
    source = f"node {node.name or node.output[0]!r} ({op})"
    if op == "Add":
        ea = ElementwiseAffine(1.0, c, im.shape, source)
    elif op == "Sub":
        ea = ElementwiseAffine(1.0, -c, im.shape, source) if data_first else ElementwiseAffine(-1.0, c, im.shape, source)
    elif op == "Mul":
        ea = ElementwiseAffine(c, 0.0, im.shape, source)
    else:  # Div
        if not data_first:
            im.fail(node, "division by the data is not affine")
        if np.any(c == 0):
            im.fail(node, "division by zero")
        ea = ElementwiseAffine(1.0 / c, 0.0, im.shape, source)
    im.emit(node, ea, im.shape)


def _conv(im: _Importer, node):
    if len(im.shape) != 3:
        im.fail(node, f"expects a (C, H, W) input, got {im.shape}")
    w = im.const(node.input[1])
    if w is None or w.ndim != 4:
        im.fail(node, "only 2-D convolutions with a constant weight are supported")
    if im.attr(node, "group", 1) != 1:
        im.fail(node, "grouped convolutions are not supported")
    if any(d != 1 for d in im.attr(node, "dilations", [1, 1])):
        im.fail(node, "dilated convolutions are not supported")
    auto_pad = im.attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "VALID"):
        im.fail(node, f"auto_pad={auto_pad} is not supported; export with explicit pads")
    pads = im.attr(node, "pads", [0, 0, 0, 0])
    if pads[0] != pads[2] or pads[1] != pads[3]:
        im.fail(node, f"asymmetric padding {pads} is not supported")
    strides = im.attr(node, "strides", [1, 1])
    b = im.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    layer = Conv2d(w, b, tuple(strides), (pads[0], pads[1]))
    c, h, wd = im.shape
    oh = (h + 2 * pads[0] - w.shape[2]) // strides[0] + 1
    ow = (wd + 2 * pads[1] - w.shape[3]) // strides[1] + 1
    im.emit(node, layer, (w.shape[0], oh, ow))


def _activation(cls):
    def handler(im: _Importer, node):
        layer = LeakyReLU(im.attr(node, "alpha", 0.01)) if cls is LeakyReLU else cls()
        im.emit(node, layer, im.shape)
    return handler


def _flatten(im: _Importer, node):
    if im.attr(node, "axis", 1) != 1:
        im.fail(node, "only Flatten with axis=1 is supported")
    im.emit(node, Flatten(), (int(np.prod(im.shape)),))


def _reshape(im: _Importer, node):
    if node.input[1] in im.symbolic:
        target = list(im.symbolic[node.input[1]])
    else:
        target = [int(v) for v in np.asarray(im.const(node.input[1])).ravel()]
    full = [BATCH] + list(im.shape)
    if not im.attr(node, "allowzero", 0):
        target = [full[k] if (v == 0 and not isinstance(v, _Batch)) else v for k, v in enumerate(target)]
    size = int(np.prod(im.shape))
    if not target or not (target[0] is BATCH or target[0] in (-1, 1)):
        im.fail(node, f"reshape to {target} does not keep the batch dimension first")
    rest = target[1:]
    if target[0] == -1 and -1 in rest:
        im.fail(node, f"reshape target {target} is ambiguous")
    if -1 in rest:
        known = int(np.prod([v for v in rest if v != -1]))
        rest = [size // known if v == -1 else v for v in rest]
    if target[0] == -1 and not rest:
        rest = [size]
    if int(np.prod(rest)) != size:
        im.fail(node, f"reshape to {target} changes the sample size {size}")
    if tuple(rest) == im.shape:
        im.passthrough(node)
    elif len(rest) == 1:
        im.emit(node, Flatten(), (size,))
    else:
        im.fail(node, f"reshape from {im.shape} to {tuple(rest)} is not a flatten")


def _pool(im: _Importer, node):
    if len(im.shape) != 3:
        im.fail(node, f"expects a (C, H, W) input, got {im.shape}")
    kernel = im.attr(node, "kernel_shape")
    strides = im.attr(node, "strides", [1, 1])
    if any(p != 0 for p in im.attr(node, "pads", [0, 0, 0, 0])) or im.attr(node, "ceil_mode", 0):
        im.fail(node, "average pooling with padding or ceil_mode is not supported")
    c, h, w = im.shape
    im.emit(node, AvgPool2d(tuple(kernel), tuple(strides)),
            (c, (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1))


def _global_pool(im: _Importer, node, keepdims: bool = True):
    if len(im.shape) != 3:
        im.fail(node, f"expects a (C, H, W) input, got {im.shape}")
    c, h, w = im.shape
    im.emit(node, AvgPool2d((h, w), (h, w)), (c, 1, 1))
    if not keepdims:
        im.items.append(Flatten())
        im.shape = (c,)


def _reduce_mean(im: _Importer, node):
    axes = im.attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = [int(a) for a in np.asarray(im.const(node.input[1])).ravel()]
    if axes is None or len(im.shape) != 3 or sorted(a % 4 for a in axes) != [2, 3]:
        im.fail(node, "only ReduceMean over the two spatial axes of a (batch, C, H, W) tensor is supported")
    _global_pool(im, node, keepdims=bool(im.attr(node, "keepdims", 1)))


def _batch_norm(im: _Importer, node):
    scale, bias, mean, var = (im.const(n) for n in node.input[1:5])
    if any(v is None for v in (scale, bias, mean, var)):
        im.fail(node, "BatchNormalization parameters must be constants (inference mode)")
    eps = im.attr(node, "epsilon", 1e-5)
    s = scale / np.sqrt(var + eps)
    t = bias - mean * s
    shaped = (lambda v: v.reshape(-1, 1, 1)) if len(im.shape) == 3 else (lambda v: v)
    im.emit(node, ElementwiseAffine(shaped(s), shaped(t), im.shape, f"node {node.name!r} (BatchNormalization)"), im.shape)


def _identity(im: _Importer, node):
    im.passthrough(node)


DATA_OPS = {
    "Gemm": _gemm, "MatMul": _matmul, "Add": _elementwise, "Sub": _elementwise, "Mul": _elementwise,
    "Div": _elementwise, "Conv": _conv, "Relu": _activation(ReLU), "LeakyRelu": _activation(LeakyReLU),
    "Tanh": _activation(Tanh), "Sigmoid": _activation(Sigmoid), "Flatten": _flatten, "Reshape": _reshape,
    "AveragePool": _pool, "GlobalAveragePool": _global_pool, "ReduceMean": _reduce_mean,
    "BatchNormalization": _batch_norm, "Identity": _identity, "Dropout": _identity,
}


def load_onnx(path) -> Network:
    try:
        import onnx
    except ImportError:
        raise ImportError("reading ONNX models needs the onnx package: pip install onnx") from None
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError, missing external data, ...
        raise InvalidNetworkError(f"{path}: not a readable ONNX model ({e})") from None
    return _Importer(model, str(path)).run(model.graph.node)
