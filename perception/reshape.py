"""A fully convolutional segmenter re-shaped to the camera's aspect, at load, in memory.

DeepLab-style graphs exported at a fixed square (513x513) waste most of their compute on
padding when a wide frame is letterboxed into them: a KITTI frame (3.3:1) fills 155 of 513
rows. Their convolutions do not care about the input size, but a few nodes were frozen to
it by the export: the image-pooling branch's average pool (a kernel the size of the
feature map), the tile that broadcasts its result back, and resizes given as scales that
map the feature map back to 513. ``reshape_model`` rewrites exactly those for another
input size and refuses a graph holding any other constant that depends on the size.

Sizes are ``stride * k + 1`` (DeepLab's convention): every stride-2 stage then sees an odd
size, so the SAME padding that the export wrote out as explicit pads is still the
padding TensorFlow would choose, and the network computes what it was trained to. The
image pooling averages over the frame instead of over the frame and the padding.

The source file is verified by its sha256 as usual; the re-shaped graph lives only in
memory (nothing derived is written), one ONNX session per frame size.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .manifest import InputSpec, ModelManifest
from .runtime import Backend, ModelLoadError, RuntimeOptions, create_onnx_backend

log = logging.getLogger("multimodal_perception.perception.reshape")

_SHAPE_OPS = ("Reshape", "Tile", "Expand", "ConstantOfShape", "Slice")


class ReshapeError(ModelLoadError):
    """The graph holds a size-dependent constant this module does not know how to move."""


def fitted_input(width: int, height: int, spec: InputSpec) -> tuple[int, int]:
    """(width, height) of the re-shaped input for a ``width`` x ``height`` frame: the long
    side keeps the model's size, the short side is the smallest ``stride * k + 1`` that
    holds the frame at that scale (never more than the model's own)."""
    stride = spec.fit_stride
    if width >= height:
        short = math.ceil(height * spec.width / width)
        k = max(1, math.ceil((short - 1) / stride))
        return spec.width, min(spec.height, stride * k + 1)
    short = math.ceil(width * spec.height / height)
    k = max(1, math.ceil((short - 1) / stride))
    return min(spec.width, stride * k + 1), spec.height


def _chain(size: int, stride: int) -> list[int]:
    """Feature-map sizes at strides 1, 2, 4 ... ``stride`` (SAME padding: ceil)."""
    out = [size]
    while len(out) <= int(math.log2(stride)):
        out.append((out[-1] + 1) // 2)
    return out


def reshape_model(model: object, spec: InputSpec, width: int, height: int) -> object:
    """A copy of ``model`` (an onnx ModelProto taking ``spec``'s size) taking ``height`` x
    ``width`` instead. Raises ReshapeError for a graph it cannot move safely."""
    import onnx
    from onnx import numpy_helper, shape_inference

    inferred = shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(inferred.graph.value_info) + list(inferred.graph.input)
    }
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    rows0, cols0 = _chain(spec.height, spec.fit_stride), _chain(spec.width, spec.fit_stride)
    rows, cols = _chain(height, spec.fit_stride), _chain(width, spec.fit_stride)
    moved = {r0: r for r0, r in zip(rows0, rows, strict=True)}, dict(zip(cols0, cols, strict=True))
    nhwc = spec.layout == "NHWC"
    inits = {i.name: i for i in graph.initializer}

    def spatial(dims: list[int], h_axis: int) -> list[int]:
        new = list(dims)
        for axis, table in ((h_axis, moved[0]), (h_axis + 1, moved[1])):
            if new[axis] not in table:
                raise ReshapeError(f"size {dims} has no counterpart at the new input size")
            new[axis] = table[new[axis]]
        return new

    for node in graph.node:
        if node.op_type == "AveragePool":
            for attr in node.attribute:
                if attr.name == "kernel_shape" and list(attr.ints) != [1, 1]:
                    attr.ints[:] = spatial([0, 0, *attr.ints], 2)[2:]
        elif node.op_type == "Tile":
            multiples = numpy_helper.to_array(inits[node.input[1]]).tolist()
            axis = 1 if multiples[1] > 1 and multiples[3] == 1 else 2
            inits[node.input[1]].CopyFrom(
                numpy_helper.from_array(np.array(spatial(multiples, axis), np.int64), node.input[1])
            )
        elif node.op_type == "Resize" and len(node.input) > 2 and node.input[2] in inits:
            scales = numpy_helper.to_array(inits[node.input[2]])
            source = shapes.get(node.input[0])
            if scales.size != 4 or not np.any(scales != 1):
                continue
            if not source or 0 in source:
                raise ReshapeError(f"Resize {node.name}: input shape unknown")
            axis = 1 if (scales[1] != 1 and scales[3] == 1) else 2
            target = [math.floor(float(d * s) + 1e-4) for d, s in zip(source, scales, strict=True)]
            sizes = spatial(target, axis)
            name = f"{node.name}__fitted_sizes"
            graph.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), name))
            node.input[2] = ""
            if len(node.input) > 3:
                node.input[3] = name
            else:
                node.input.append(name)
        elif node.op_type in _SHAPE_OPS:
            for name in node.input[1:]:
                if name in inits:
                    values = set(numpy_helper.to_array(inits[name]).ravel().tolist())
                    if values & ((set(rows0) | set(cols0)) - {1}):
                        raise ReshapeError(f"{node.op_type} {node.name}: a size-dependent constant")
    dims = graph.input[0].type.tensor_type.shape.dim
    h_axis = 1 if nhwc else 2
    dims[h_axis].dim_value, dims[h_axis + 1].dim_value = height, width
    del graph.value_info[:]
    for output in graph.output:
        output.type.tensor_type.ClearField("shape")
    return out


@dataclass
class FittedSegmenterInput:
    """Sessions of one segmenter re-shaped per frame size (a few sizes at most: cameras).
    ``__call__(width, height)`` gives the backend and the input spec to letterbox into,
    or None when this graph cannot be re-shaped (then the caller pads, as before)."""

    manifest: ModelManifest
    path: Path
    options: RuntimeOptions
    _sessions: dict[tuple[int, int], tuple[Backend, InputSpec] | None] = field(
        default_factory=dict, init=False, repr=False
    )
    _model: object | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    MAX_SIZES = 8

    def __call__(self, width: int, height: int) -> tuple[Backend, InputSpec] | None:
        spec = self.manifest.input
        size = fitted_input(width, height, spec)
        if size == (spec.width, spec.height):
            return None
        return self.sized(*size)

    def sized(self, width: int, height: int) -> tuple[Backend, InputSpec] | None:
        """A session taking exactly ``width`` x ``height`` (each ``stride * k + 1``: the
        square windows of ``segmenter.mode: regions``), or None when it cannot be made."""
        size = (int(width), int(height))
        with self._lock:  # the node's callbacks may prepare a size its worker is using
            if size not in self._sessions:
                if len(self._sessions) >= self.MAX_SIZES:
                    self._sessions.pop(next(iter(self._sessions)))
                self._sessions[size] = self._load(*size)
            return self._sessions[size]

    def _load(self, width: int, height: int) -> tuple[Backend, InputSpec] | None:
        import onnx

        spec = self.manifest.input
        try:
            if self._model is None:
                self._model = onnx.load(str(self.path))  # verified by create_backend before
            model = reshape_model(self._model, spec, width, height)
            backend = create_onnx_backend(self.path, self.options, model.SerializeToString())
            dtype = np.uint8 if spec.dtype == "uint8" else np.float32
            shape = (1, height, width, 3) if spec.layout == "NHWC" else (1, 3, height, width)
            result = backend.run({backend.input_names[0]: np.zeros(shape, dtype)})[0]
            if (height, width) not in (tuple(result.shape[-2:]), tuple(result.shape[1:3])):
                raise ReshapeError(f"output {result.shape} is not {height}x{width}")
        except (ModelLoadError, ImportError, ValueError, KeyError, IndexError) as exc:
            log.warning(
                "%s: not re-shaped to %dx%d (%s); letterboxing into %dx%d",
                self.manifest.name, width, height, exc, spec.width, spec.height,
            )  # fmt: skip
            return None
        log.info("%s re-shaped to %dx%d for the camera's aspect", self.manifest.name, width, height)
        return backend, replace(spec, width=width, height=height)


FitInput = Callable[[int, int], "tuple[Backend, InputSpec] | None"]
