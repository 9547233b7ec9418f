"""Parameters: the shipped YAML documents every parameter; bad values are refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conftest import REPO
from multimodal_perception.config import (
    PARAMETERS,
    ParameterError,
    defaults,
    load_parameters,
)
from multimodal_perception.rig import sync_config

YAML = REPO / "config" / "perception.yaml"


def test_shipped_yaml_lists_and_documents_every_parameter():
    params = load_parameters(YAML)
    assert params.values == defaults().values
    text = YAML.read_text()
    for spec in PARAMETERS:
        leaf = spec.name.split(".")[-1]
        lines = [
            ln
            for ln in text.splitlines()  # value lines, not section headers
            if ln.strip().startswith(f"{leaf}:") and ln.split(":", 1)[1].split("#")[0].strip()
        ]
        assert lines and all("#" in ln for ln in lines), f"{spec.name} undocumented in {YAML}"


def test_sync_windows_follow_rates_and_offsets(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "node:\n  ros__parameters:\n    sensors:\n      lidar: {rate_hz: 20.0,"
        " offset_ms: 25}\n      radar: {max_skew_ms: 40.0}\n"
    )
    cfg = sync_config(load_parameters(path))
    assert cfg.anchor == "camera"
    assert cfg.windows["lidar"].offset_ns == 25_000_000
    assert cfg.windows["lidar"].max_skew_ns == 25_000_000  # half of 50 ms
    assert cfg.windows["radar"].max_skew_ns == 40_000_000


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("sensors: {lidar: {rate_hz: 500.0}}", r"sensors.lidar.rate_hz=500.0: outside"),
        ("sensors: {lidar: {rate_hz: fast}}", "expected float"),
        ("sync: {anchor: sonar}", "expected one of"),
        ("sync: {max_buffer: 2.5}", "expected int"),
        ("sync: {timeout_ms: .nan}", "finite"),
        ("sync: {bogus: 1}", "unknown parameter 'sync.bogus'"),
    ],
)
def test_bad_values_are_refused_with_the_parameter_named(tmp_path, body, match):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    " + body + "\n")
    with pytest.raises(ParameterError, match=match):
        load_parameters(path)


def test_unsafe_yaml_is_not_executed(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(Exception, match="constructor"):
        load_parameters(path)


def test_every_class_the_filter_judges_has_a_threshold_parameter(tmp_path):
    from multimodal_perception.config import SPECS
    from multimodal_perception.fusion.consistency import CLASS_MAPS

    for space, mapping in CLASS_MAPS.items():
        for cls in mapping:
            name = "filter.threshold." + cls.replace(" ", "_")
            assert name in SPECS, f"{cls} ({space}) has no threshold parameter"


def test_thresholds_come_from_the_segmenter_manifest_unless_a_parameter_sets_them(tmp_path):
    """Thresholds belong to the models they were fitted for: the real DeepLab's manifest
    carries the KITTI + VoD fit, the synthetic segmenter its own; a parameter >= 0 wins,
    classes without either get filter.default_threshold."""
    from multimodal_perception.core import filter_config
    from multimodal_perception.perception.manifest import available_manifests

    manifests = available_manifests()
    real = manifests["deeplab_mnedgetpu_cityscapes"].filter_thresholds
    synthetic = manifests["mmp_tinyseg_synth"].filter_thresholds
    assert real["person"] != synthetic["person"]
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    filter: {threshold: {car: 0.55}}\n")
    params = load_parameters(path)
    for calibrated in (real, synthetic):
        config = filter_config(params, "cityscapes", calibrated)
        assert config.threshold("person") == calibrated["person"]
        assert config.threshold("car") == 0.55  # the parameter
        assert config.threshold("bus") == params["filter.default_threshold"]
    assert filter_config(load_parameters(), "cityscapes").threshold("person") == 0.2


def test_the_pipeline_applies_its_models_thresholds_and_a_parameter_can_take_them_back():
    """The embedded models: the synthetic segmenter's thresholds were set for the synthetic
    detector; a run-time parameter overrides one, -1.0 gives it back; with a detector they
    were not fitted with they do not apply."""
    from multimodal_perception.pipeline import Pipeline
    from multimodal_perception.ros_pkg.factory import RosbagsFactory
    from multimodal_perception.ros_pkg.typestore import get_project_typestore

    factory = RosbagsFactory(get_project_typestore())
    pipeline = Pipeline(load_parameters(), factory)
    calibrated = pipeline.models.segmenter.manifest.filter_thresholds
    assert pipeline.core.filter.config.threshold("person") == calibrated["person"] != 0.2
    pipeline.update_parameters({"filter.threshold.person": 0.3})
    assert pipeline.core.filter.config.threshold("person") == 0.3
    pipeline.update_parameters({"filter.threshold.person": -1.0})
    assert pipeline.core.filter.config.threshold("person") == calibrated["person"]
    stack = pipeline.models
    stack.detector.manifest = replace(stack.detector.manifest, name="another_detector")
    assert stack.filter_thresholds == {}


def test_a_mistyped_parameter_name_gets_the_closest_valid_ones():
    from multimodal_perception.config import validate

    with pytest.raises(ParameterError, match=r"did you mean filter\.threshold\.person"):
        validate("filter.treshold.person", 0.3)
