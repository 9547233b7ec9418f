"""Runtime, manifests and fetch: failures are refused at startup, naming file and problem."""

from __future__ import annotations

import dataclasses
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from multimodal_perception.perception.detector import Detector
from multimodal_perception.perception.fetch import FetchError, fetch_model
from multimodal_perception.perception.manifest import (
    ManifestError,
    available_manifests,
    load_manifest,
    parse_manifest,
)
from multimodal_perception.perception.models import load_model
from multimodal_perception.perception.runtime import (
    ModelLoadError,
    RuntimeOptions,
    create_backend,
    sha256_of,
)

MANIFESTS = available_manifests()
TINY = MANIFESTS["mmp_tinydet_synth"]
TINY_PATH = Path(TINY.path).parent / TINY.file


def test_every_shipped_manifest_parses_and_project_models_match_their_digest():
    assert {"yolox_nano_416", "fastestdet_352", "deeplab_mnedgetpu_cityscapes",
            "deeplabv3_mnv2_voc", "twinlitenet_bdd100k", "mmp_tinydet_synth",
            "mmp_tinyseg_synth"} <= set(MANIFESTS)  # fmt: skip
    for m in MANIFESTS.values():
        if m.trained_by_project:
            assert sha256_of(Path(m.path).parent / m.file) == m.sha256, m.name


def test_cpu_fallback_reports_the_provider_that_runs():
    backend = create_backend(TINY, TINY_PATH, RuntimeOptions(providers=("tensorrt", "cuda", "cpu")))
    assert backend.provider == "CPUExecutionProvider"
    out = backend.run({"images": np.zeros((3, 3, 192, 320), np.float32)})
    assert out[0].shape[:2] == (3, 4 + len(TINY.classes))  # batched: dynamic batch axis


def test_corrupt_model_file_is_refused(tmp_path):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(TINY_PATH.read_bytes()[:5000])
    manifest = dataclasses.replace(TINY, sha256=sha256_of(bad))
    with pytest.raises(ModelLoadError, match=r"truncated\.onnx cannot be loaded by onnxruntime"):
        create_backend(manifest, bad)


def test_wrong_sha256_is_refused(tmp_path):
    manifest = dataclasses.replace(TINY, sha256="0" * 64)
    with pytest.raises(ModelLoadError, match=r"mmp_tinydet_synth\.onnx: sha256 [0-9a-f]{64} "
                                             r"differs from the manifest's 0{64}"):  # fmt: skip
        create_backend(manifest, TINY_PATH)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        create_backend(TINY, tmp_path / "nope.onnx")


def test_wrong_input_shape_in_manifest_is_refused():
    spec = dataclasses.replace(TINY.input, width=416, height=416)
    manifest = dataclasses.replace(TINY, input=spec)
    with pytest.raises(ModelLoadError, match=r"declares input NCHW 416x416x3 but .*takes"):
        create_backend(manifest, TINY_PATH)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"task": "tracking"}, "task='tracking'"),
        ({"decoder": "yolox", "task": "segmentation"}, "not a segmentation decoder"),
        ({"sha256": "abc"}, "not 64 hex digits"),
        ({"input": {"width": 320}}, "input spec"),
        ({"input": {"width": 320, "height": 192, "layout": "NCWH"}}, "input.layout='NCWH'"),
        ({"classes": []}, "classes must be"),
        ({"filter_thresholds": {"person": 1.5}}, "filter_thresholds="),
        ({"filter_thresholds": ["person"]}, "filter_thresholds="),
        ({"filter_thresholds": {"person": True}}, "filter_thresholds="),
        ({"filter_thresholds": {"person": 0.5}}, "belong to a segmentation manifest"),
    ],
)
def test_bad_manifests_name_the_key(tmp_path, edit, match):
    doc = yaml.safe_load(Path(TINY.path).read_text())
    doc.update(edit)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ManifestError, match=match):
        load_manifest(path)


def test_a_manifest_with_a_python_tag_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "m.yaml"
    # An unsafe loader would run os.mkdir(marker) while parsing.
    path.write_text(
        Path(TINY.path).read_text() + f"extra: !!python/object/apply:os.mkdir [{str(marker)!r}]\n"
    )
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest(path)
    assert not marker.exists()


def test_torchscript_backend_runs_behind_the_same_interface(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is an optional dependency")

    class Net(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3), keepdim=False)

    path = tmp_path / "net.pt"
    torch.jit.script(Net()).save(str(path))
    doc = {**yaml.safe_load(Path(TINY.path).read_text()), "file": "net.pt",
           "sha256": sha256_of(path)}  # fmt: skip
    manifest = parse_manifest(doc, "test")
    backend = create_backend(manifest, path)
    assert backend.provider == "torch-cpu"
    x = np.random.default_rng(0).uniform(size=(2, 3, 192, 320)).astype(np.float32)
    np.testing.assert_allclose(backend.run({"input": x})[0], x.mean(axis=(2, 3)), rtol=1e-5)
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"bad\.pt is not a loadable TorchScript"):
        create_backend(
            dataclasses.replace(manifest, sha256=sha256_of(tmp_path / "bad.pt")),
            tmp_path / "bad.pt",
        )


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _release_manifest(url: str, sha: str):
    doc = yaml.safe_load(Path(MANIFESTS["fastestdet_352"].path).read_text())
    doc.update(urls=[url], sha256=sha, file="fastestdet_352/FastestDet.onnx")
    return parse_manifest(doc, "test")


def test_fetch_downloads_and_verifies_against_the_manifest(http_root, tmp_path):
    root, base = http_root
    shutil.copy(TINY_PATH, root / "release.onnx")
    manifest = _release_manifest(f"{base}/release.onnx", sha256_of(TINY_PATH))
    target = fetch_model(manifest, tmp_path / "models")
    assert target == tmp_path / "models/fastestdet_352/FastestDet.onnx"
    assert target.read_bytes() == TINY_PATH.read_bytes()


def test_fetch_refuses_an_unlisted_digest_unless_accepted(http_root, tmp_path):
    root, base = http_root
    (root / "other.onnx").write_bytes(b"a different release")
    manifest = _release_manifest(f"{base}/other.onnx", "1" * 64)
    with pytest.raises(FetchError, match=r"refused\. If you trust this file"):
        fetch_model(manifest, tmp_path / "models")
    assert not (tmp_path / "models/fastestdet_352/FastestDet.onnx").exists()
    assert not list((tmp_path / "models/fastestdet_352").glob(".fetch-*"))  # no leftovers
    import hashlib

    digest = hashlib.sha256(b"a different release").hexdigest()
    target = fetch_model(manifest, tmp_path / "models", accept_digest=digest)
    assert target.read_bytes() == b"a different release"


def test_fetch_reports_unreachable_and_non_http_urls(http_root, tmp_path):
    _, base = http_root
    manifest = _release_manifest(f"{base}/missing.onnx", "1" * 64)
    with pytest.raises(FetchError, match="404"):
        fetch_model(manifest, tmp_path)
    manifest = dataclasses.replace(manifest, urls=("file:///etc/passwd",))
    with pytest.raises(FetchError, match="only http"):
        fetch_model(manifest, tmp_path)


def test_embedded_default_detector_runs_batched_tiles():
    det = Detector(*load_model("mmp_tinydet_synth"))
    assert det.max_batch == 16  # dynamic batch axis: tiles go in one call
    image = np.full((384, 1280, 3), 90, np.uint8)
    det.tiling.enabled = True
    det(image)
    assert det.last_times.calls == 1
