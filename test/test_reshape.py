"""The segmenter re-shaped to the camera's aspect (perception/reshape.py): the same network
at its own size, a third of the input on a KITTI frame with the person still found, and
graphs it cannot move refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import DATA, MODELS
from multimodal_perception.config import load_parameters
from multimodal_perception.perception.manifest import InputSpec
from multimodal_perception.perception.models import available_manifests, resolve_model_path
from multimodal_perception.perception.preprocess import resize_image, to_tensor
from multimodal_perception.perception.reshape import ReshapeError, fitted_input, reshape_model
from multimodal_perception.perception.runtime import RuntimeOptions, create_onnx_backend
from multimodal_perception.perception.stack import load_models

onnx = pytest.importorskip("onnx")
DEEPLAB = "deeplab_mnedgetpu_cityscapes"
KITTI_000000 = DATA / "kitti_object/training/image_2/000000.png"
PEDESTRIAN = (712, 143, 810, 307)  # KITTI 000000's label, px


def test_fitted_sizes_keep_the_long_side_and_round_the_short_one_to_16k_plus_1():
    spec = InputSpec(513, 513, fit_stride=16)
    assert fitted_input(1242, 375, spec) == (513, 161)  # KITTI: 155 rows of image
    assert fitted_input(1936, 1216, spec) == (513, 337)  # View-of-Delft
    assert fitted_input(640, 480, spec) == (513, 385)
    assert fitted_input(375, 1242, spec) == (161, 513)  # portrait
    assert fitted_input(800, 800, spec) == (513, 513)  # square: the model as it is
    assert fitted_input(4000, 10, spec) == (513, 17)


@pytest.fixture(scope="module")
def deeplab():
    manifest = available_manifests()[DEEPLAB]
    path = MODELS / manifest.file
    if not path.is_file() or not KITTI_000000.is_file():
        pytest.skip(f"real model/data absent ({path}, {KITTI_000000} not beside this clone)")
    return manifest, resolve_model_path(manifest, MODELS)


def _labels(backend, spec, bgr):
    spec = InputSpec(**{**spec.__dict__, "resize": "letterbox", "pad_value": 0})
    resized, _ = resize_image(bgr, spec)
    return backend.run({backend.input_names[0]: to_tensor([resized], spec)})[0][0]


def test_reshaped_to_its_own_size_it_is_the_same_network(deeplab):
    manifest, path = deeplab
    spec = manifest.input
    options = RuntimeOptions(providers=("cpu",), intra_op_threads=1)
    original = create_onnx_backend(path, options)
    model = reshape_model(onnx.load(str(path)), spec, spec.width, spec.height)
    same = create_onnx_backend(path, options, model.SerializeToString())
    bgr = cv2.imread(str(KITTI_000000))
    np.testing.assert_array_equal(_labels(same, spec, bgr), _labels(original, spec, bgr))


def test_kitti_frame_segmented_at_a_third_of_the_input_finds_the_pedestrian(deeplab):
    params = load_parameters(None).with_overrides(
        {"models.directory": str(MODELS), "segmenter.mode": "letterbox", "performance.threads": 1}
    )
    segmenter = load_models(params).segmenter
    assert segmenter is not None and segmenter.fit is not None
    bgr = cv2.imread(str(KITTI_000000))
    backend, spec = segmenter.fit(bgr.shape[1], bgr.shape[0])
    assert (spec.width, spec.height) == (513, 161)
    assert backend.input_shapes[0] == [1, 161, 513, 3]
    fitted = segmenter.segment(bgr).labels
    segmenter.fit = None  # the square, padded
    padded = segmenter.segment(bgr).labels
    assert fitted.shape == padded.shape == bgr.shape[:2]
    x1, y1, x2, y2 = PEDESTRIAN
    person = segmenter.class_names.index("person")
    assert (fitted[y1:y2, x1:x2] == person).mean() > 0.4  # padded: 0.59, fitted: 0.51
    assert (fitted == padded).mean() > 0.7  # measured 0.75; 0.94 on a View-of-Delft frame


def test_tiles_mode_has_no_fitted_input_and_blas_runs_one_thread(deeplab):
    from threadpoolctl import threadpool_info

    params = load_parameters(None).with_overrides({"models.directory": str(MODELS)})
    assert load_models(params).segmenter.fit is None  # tiles: full resolution, the square
    assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {1}


def test_a_graph_with_a_size_dependent_constant_is_refused():
    from onnx import TensorProto, helper, numpy_helper

    # A 16x16 input flattened and reshaped back to 16x16: the constant holds the size.
    shape = numpy_helper.from_array(np.array([1, 3, 16, 16], np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Reshape", ["r", "shape"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])],
        [shape],
    )
    model = helper.make_model(graph)
    spec = InputSpec(16, 16, layout="NCHW", fit_stride=8)
    with pytest.raises(ReshapeError, match="Reshape"):
        reshape_model(model, spec, 16, 9)
