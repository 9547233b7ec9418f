"""The parameter table: every parameter's dotted name, default, range, choices and help.

One schema for the rclpy node (declared with descriptors from it), the launch files and
the ROS-free pipeline; ``config`` validates and loads values against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fusion.consistency import CLASS_MAPS


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def kind(self) -> type:
        return type(self.default)


MS = 1_000_000
DEFAULT_THRESHOLD = 0.2


def threshold_key(cls: str) -> str:
    """A class name as a parameter name segment (ROS 2 names allow no spaces)."""
    return cls.replace(" ", "_")


def _filter_classes() -> list[str]:
    """Every class the filter can judge (every label space's class map)."""
    return sorted({c for mapping in CLASS_MAPS.values() for c in mapping})


BACKEND_HELP = (
    "Findings' scorer: auto (clip with open_vocab.model_dir, else zero_shot), clip, zero_shot"
)
PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("sensors.camera.rate_hz", 10.0, "Nominal camera rate", 1.0, 120.0),
    ParamSpec("sensors.lidar.rate_hz", 10.0, "Nominal lidar rate", 1.0, 50.0),
    ParamSpec("sensors.radar.rate_hz", 13.0, "Nominal radar rate", 1.0, 50.0),
    ParamSpec(
        "sensors.lidar.offset_ms", 0.0, "Expected lidar stamp minus camera stamp", -500.0, 500.0
    ),
    ParamSpec(
        "sensors.radar.offset_ms", 0.0, "Expected radar stamp minus camera stamp", -500.0, 500.0
    ),
    ParamSpec(
        "sensors.lidar.max_skew_ms",
        -1.0,
        "Largest |lidar - (camera + offset)| accepted; -1: half the lidar period",
        -1.0,
        1000.0,
    ),
    ParamSpec(
        "sensors.radar.max_skew_ms",
        -1.0,
        "Largest |radar - (camera + offset)| accepted; -1: half the radar period",
        -1.0,
        1000.0,
    ),
    ParamSpec(
        "sync.anchor",
        "camera",
        "Sensor whose messages define frames",
        choices=("camera", "lidar", "radar"),
    ),
    ParamSpec(
        "sync.timeout_ms",
        150.0,
        "Header-time wait for partners after an anchor before emitting without them",
        0.0,
        5000.0,
    ),
    ParamSpec("sync.max_buffer", 64, "Messages buffered per sensor", 1, 10000),
    ParamSpec(
        "sync.max_age_ms", 2000.0, "Buffered messages older than this are dropped", 1.0, 60000.0
    ),
    ParamSpec(
        "sync.time_jump_ms",
        1000.0,
        "A stamp this far behind the newest resets the synchroniser",
        1.0,
        3.6e6,
    ),
    ParamSpec(
        "sync.reorder_tolerance_ms",
        0.0,
        "How far out of stamp order a partner may arrive and still be matched",
        0.0,
        5000.0,
    ),
    *(
        spec
        for sensor, age in (("lidar", 150.0), ("radar", 120.0))
        for spec in (
            ParamSpec(
                f"sync.{sensor}.policy",
                "wait",
                f"wait: the {sensor} message nearest the camera stamp, waited for; latest: the "
                f"newest {sensor} message already received (no wait), moved to the camera stamp",
                choices=("wait", "latest"),
            ),
            ParamSpec(
                f"sync.{sensor}.max_age_ms",
                age,
                f"latest policy: the oldest {sensor} message used, camera stamp minus its stamp",
                0.0,
                2000.0,
            ),
        )
    ),
    ParamSpec("topics.camera", "/camera/image_raw", "sensor_msgs/Image input"),
    ParamSpec(
        "topics.camera_compressed",
        "/camera/image_raw/compressed",
        "sensor_msgs/CompressedImage input (used when the raw topic is absent)",
    ),
    ParamSpec("topics.camera_info", "/camera/camera_info", "sensor_msgs/CameraInfo input"),
    ParamSpec("topics.lidar", "/lidar/points", "sensor_msgs/PointCloud2 lidar input"),
    ParamSpec(
        "topics.radar",
        "/radar/points",
        "radar input: PointCloud2, radar_msgs/RadarScan or RadarTracks",
    ),
    ParamSpec(
        "topics.radar_type",
        "PointCloud2",
        "Message type on topics.radar",
        choices=("PointCloud2", "RadarScan", "RadarTracks"),
    ),
    ParamSpec(
        "cameras.names",
        "",
        "Camera rig: comma-separated camera names ('' = one camera on topics.camera*); each "
        "is a frame anchor with its own partners, outputs under <output ns>/<name>/",
    ),
    ParamSpec(
        "cameras.image_topic",
        "/cameras/{name}/image_raw",
        "sensor_msgs/Image topic of each rig camera ({name} = the camera)",
    ),
    ParamSpec(
        "cameras.compressed_topic",
        "/cameras/{name}/image_raw/compressed",
        "sensor_msgs/CompressedImage topic of each rig camera",
    ),
    ParamSpec(
        "cameras.info_topic",
        "/cameras/{name}/camera_info",
        "sensor_msgs/CameraInfo topic of each rig camera",
    ),
    ParamSpec(
        "cameras.merged_on",
        "",
        "Rig camera whose frames publish the merged (all-camera) scene ('' = the first)",
    ),
    ParamSpec(
        "cameras.merge_window_ms",
        250.0,
        "Merged scene: a camera's objects are included while its newest frame is this recent",
        1.0,
        5000.0,
    ),
    ParamSpec("topics.tf", "/tf", "tf2_msgs/TFMessage"),
    ParamSpec("topics.tf_static", "/tf_static", "tf2_msgs/TFMessage, latched"),
    ParamSpec("frames.base", "base_link", "Vehicle frame of 3D outputs (REP 105)"),
    ParamSpec("frames.fixed", "odom", "Tracking frame when tf has it; else frames.base"),
    ParamSpec(
        "models.directory", "", "Model directory with real models ('' = $MMP_MODEL_DIR or none)"
    ),
    ParamSpec("models.detector", "", "Detector manifest name ('' = default for the directory)"),
    ParamSpec(
        "models.segmenter", "", "Segmenter manifest name ('' = default; 'none' = no segmentation)"
    ),
    ParamSpec("models.lanes", "", "Drivable-area/lane model ('' = off), e.g. twinlitenet_bdd100k"),
    ParamSpec("models.providers", "tensorrt,cuda,cpu", "onnxruntime providers, in order"),
    ParamSpec("models.threads", 0, "Inference threads per model (0 = onnxruntime default)", 0, 64),
    ParamSpec(
        "performance.threads",
        0,
        "CPU threads for the models together (0 = every core); with 2 or more the detector "
        "and segmenter run in parallel, each with half (models.threads > 0 overrides)",
        0,
        256,
    ),
    ParamSpec(
        "detector.score_threshold",
        -1.0,
        "Detection score threshold (-1 = the manifest's)",
        -1.0,
        1.0,
    ),
    ParamSpec(
        "detector.classes",
        "person,bicycle,car,motorcycle,bus,truck,train,traffic light,stop sign,cyclist",
        "Detector classes kept (comma-separated; '' = all)",
    ),
    ParamSpec("detector.tiling", False, "Tiled (sliced) detection for wide frames"),
    ParamSpec("detector.tile_size", 0, "Tile side in pixels (0 = automatic)", 0, 8192),
    ParamSpec("detector.tile_overlap", 0.25, "Overlap between tiles", 0.0, 0.8),
    ParamSpec(
        "detector.tile_region",
        "frame",
        "Where tiles go: frame (all of it) or horizon (the band where road users beyond "
        "detector.horizon_near_m can appear, from the camera and the ground plane)",
        choices=("frame", "horizon"),
    ),
    ParamSpec(
        "detector.horizon_near_m", 15.0, "Nearest range the horizon tiles are for, m", 2.0, 200.0
    ),
    ParamSpec(
        "segmenter.mode",
        "tiles",
        "Wide frames: 'tiles' (full resolution), 'letterbox' (one call at the camera's "
        "aspect, faster) or 'regions' (letterbox, plus full-resolution crops around boxes)",
        choices=("tiles", "letterbox", "regions"),
    ),
    ParamSpec("segmenter.max_regions", 6, "Full-resolution crops per frame (regions)", 1, 64),
    ParamSpec("filter.enabled", True, "Semantic-consistency filtering of boxes"),
    ParamSpec(
        "filter.default_threshold",
        DEFAULT_THRESHOLD,
        "Evidence a box needs when its class has no calibrated threshold",
        0.0,
        1.0,
    ),
    *(
        ParamSpec(
            f"filter.threshold.{threshold_key(cls)}",
            -1.0,
            f"Evidence threshold for {cls} boxes (< 0, default -1.0: the segmenter "
            "manifest's calibrated value for this detector, else filter.default_threshold)",
            -1.0,
            1.0,
        )
        for cls in _filter_classes()
    ),
    ParamSpec(
        "fusion.ego_motion_compensation",
        True,
        "Move lidar and radar to the camera stamp using odometry in tf",
    ),
    ParamSpec("fusion.dbscan_eps", 0.6, "Lidar clustering radius, m", 0.1, 5.0),
    ParamSpec(
        "fusion.vehicle_fit",
        "l_shape",
        "Vehicle footprints: l_shape (rectangle fit, far side from the class size) or "
        "min_area_rect (the points' rectangle, extended)",
        choices=("l_shape", "min_area_rect"),
    ),
    ParamSpec("fusion.radar_gate_m", 0.5, "Radar association gate around 3D boxes, m", 0.0, 10.0),
    ParamSpec("tracking.confirm_hits", 3, "Hits before a track is confirmed", 1, 20),
    ParamSpec("tracking.max_missed_s", 1.0, "Seconds unseen before a track is deleted", 0.05, 30.0),
    ParamSpec("description.language", "en", "Scene text language", choices=("en", "zh")),
    ParamSpec(
        "vlm.backend",
        "none",
        "Multimodal: none (scene answers), zero_shot (ImageNet+WordNet), transformers, openai",
        choices=("none", "zero_shot", "transformers", "openai"),
    ),
    ParamSpec("vlm.model_dir", "", "Local Hugging Face model directory (transformers)"),
    ParamSpec("vlm.endpoint", "", "OpenAI-compatible server base URL (openai)"),
    ParamSpec("vlm.model", "", "Model name sent to the server (openai)"),
    ParamSpec("vlm.timeout_s", 10.0, "Server timeout per attempt, s", 0.1, 600.0),
    ParamSpec("vlm.rate_hz", 1.0, "Captions at most this often (header time)", 0.01, 30.0),
    ParamSpec("output.segmentation", True, "Publish the class-id image"),
    ParamSpec("output.debug_image", False, "Publish an overlay image"),
    ParamSpec("output.rejected", True, "Publish boxes dropped by the filter"),
    ParamSpec("diagnostics.period_s", 1.0, "Diagnostics period (ROS time)", 0.1, 60.0),
    ParamSpec("inspection.zones_file", "", "YAML file of inspection zones and rules ('' = none)"),
    ParamSpec("open_vocab.backend", "auto", BACKEND_HELP, choices=("auto", "clip", "zero_shot")),
    ParamSpec(
        "open_vocab.model_dir",
        "",
        "CLIP ONNX directory (image_encoder.onnx, text_encoder.onnx, tokenizer.json, "
        "manifest.json with sha256) for open-vocabulary findings ('' = off)",
    ),
    ParamSpec(
        "open_vocab.prompts",
        "",
        "Comma-separated things to look for (e.g. 'a spill on the floor,an open cabinet door')",
    ),
    ParamSpec("open_vocab.min_score", 0.3, "A prompt's score needed for a finding", 0.0, 1.0),
    ParamSpec(
        "open_vocab.max_box_score",
        0.5,
        "Detector boxes below this score (or of no wanted class) are scored against the prompts",
        0.0,
        1.0,
    ),
    ParamSpec("open_vocab.zones", True, "Score each inspection zone's image region too"),
    ParamSpec("open_vocab.rate_hz", 1.0, "Open-vocabulary scoring at most this often", 0.01, 30.0),
    ParamSpec("calibration.enabled", False, "Check the lidar-camera rotation, off the hot path"),
    ParamSpec(
        "calibration.period_s", 10.0, "A check at most this often (header time)", 0.5, 3600.0
    ),
    ParamSpec("calibration.window_s", 2.0, "Header time a check's frames span", 0.1, 60.0),
    ParamSpec("calibration.frames", 8, "Frames a check scores, spread over its window", 1, 100),
    ParamSpec(
        "calibration.warn_deg", 0.6, "Warn beyond this rotation error (and 2 sigma)", 0.05, 10.0
    ),
    ParamSpec("calibration.error_deg", 1.5, "Error beyond this rotation error", 0.1, 20.0),
    ParamSpec(
        "qos.reliability",
        "best_effort",
        "Sensor subscriptions: best_effort (SensorData QoS) or reliable",
        choices=("best_effort", "reliable"),
    ),
    ParamSpec("qos.depth", 5, "Sensor subscription queue depth", 1, 100),
)
SPECS = {p.name: p for p in PARAMETERS}
# Per-camera overrides, ``cameras.<name>.<field>``: declared for each name in cameras.names.
CAMERA_FIELDS: tuple[ParamSpec, ...] = (
    ParamSpec("image_topic", "", "This camera's Image topic ('' = cameras.image_topic)"),
    ParamSpec("compressed_topic", "", "Its CompressedImage topic ('' = the pattern)"),
    ParamSpec("info_topic", "", "Its CameraInfo topic ('' = cameras.info_topic)"),
    ParamSpec("score_threshold", -1.0, "Its detector score threshold (-1 = global)", -1.0, 1.0),
)
