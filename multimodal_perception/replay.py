"""``mmp replay BAG --out DIR``: the pipeline over a recorded bag, in header time.

Reads rosbag2 (sqlite3 or MCAP) or ROS 1 bags with rosbags, feeds every message to the
same :class:`~multimodal_perception.pipeline.Pipeline` the rclpy node runs, and writes:

- ``DIR/output.mcap`` + ``DIR/metadata.yaml``: DIR is a rosbag2 bag (``ros2 bag play DIR``,
  Foxglove opens the .mcap) of the inputs and every published topic, outputs under
  ``/multimodal_perception/<topic>``;
- ``DIR/report.json``: per input topic in, used and dropped by reason; per-stage latency
  percentiles; detections per class; filter decisions; the models used;
- ``DIR/report.md`` with plots (latency per stage, objects over time) and overlay pictures
  of sampled frames (boxes with track ids, lidar by depth, radar, segmentation tint).

The run is deterministic: everything but the wall-clock fields (``timing`` in the report,
``latency_ms`` in scene messages and ``.ms_median`` values in diagnostics) is identical
between runs.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .config import load_parameters
from .html_report import write_html
from .lookahead import Lookahead
from .perception.stack import ModelStack
from .pipeline import Output, Pipeline
from .progress import Progress
from .ros_pkg.bag_io import (
    BagDamage,
    BagWriter,
    bag_message_counts,
    bag_metadata,
    bag_time_range,
    bag_topic_types,
    iter_bag,
)
from .ros_pkg.factory import RosbagsFactory
from .ros_pkg.typestore import get_project_typestore
from .run_versions import run_versions
from .topics import resolve_topics

NAMESPACE = "/multimodal_perception"


@dataclass
class ReplayResult:
    out_dir: Path
    report: dict[str, Any]


def _output_topic(topic: str) -> str:
    return topic if topic.startswith("/") else f"{NAMESPACE}/{topic}"


def replay(
    bags: list[Path],
    out_dir: Path,
    params_path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    pictures: int = 6,
    progress: bool = True,
    questions: list[str] | None = None,
    ask_every: int = 0,
    topics_auto: bool = False,
    models: ModelStack | None = None,
    on_frame: Callable[[Pipeline, list[Output]], None] | None = None,
    queries: list[str] | None = None,
) -> ReplayResult:
    """``questions`` are asked about the last frame (and every ``ask_every`` frames);
    answers land on ``answer`` and in the report; ``queries`` rank the last frame's
    tracks by a text (``query_result``, in the report too). ``models``: a stack loaded once by the
    caller (``mmp batch`` workers); ``on_frame(pipeline, outputs)`` sees each frame's
    outputs (``mmp replay --foxglove``)."""
    params = load_parameters(params_path)
    if overrides:
        params = params.with_overrides(overrides)
    missing = [str(b) for b in bags if not Path(b).exists()]
    if missing:
        raise FileNotFoundError(f"bag {', '.join(missing)} does not exist")
    chosen, notices = resolve_topics(params, bag_topic_types(bags), topics_auto)
    params = params.with_overrides(chosen) if chosen else params
    for line in notices:
        print(line, file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    factory = RosbagsFactory(get_project_typestore())
    pipeline = Pipeline(params, factory, models=models)
    synthetic = all("synthetic" in bag_metadata(b).get("mmp.source", "") for b in bags)
    if pipeline.models.embedded_default and not synthetic:
        print(
            "warning: the project-trained tiny models know only the synthetic world; on this "
            "recording they will miss most objects: give real models with --model-dir "
            "(or MMP_MODEL_DIR)",
            file=sys.stderr,
        )
    pipeline.keep_debug = True
    ahead = Lookahead(pipeline)  # the models of frame N+1 run while frame N is fused
    inputs = pipeline.inputs()
    # Messages stream from the bag as they are processed (memory does not grow with the
    # bag); the counts for sampling pictures and the progress bar come from its index.
    counts = bag_message_counts(bags)
    span = bag_time_range(bags)
    bar = Progress(*span) if progress else None
    camera_msgs = sum(n for t, n in (counts or {}).items() if inputs.get(t) == "camera")
    damage: list[BagDamage] = []
    sample = (
        set(
            np.linspace(0, max(camera_msgs - 1, 0), min(pictures, camera_msgs))
            .round()
            .astype(int)
            .tolist()
        )
        if camera_msgs
        else set()
    )
    tmp = out_dir / "output"
    shutil.rmtree(tmp, ignore_errors=True)
    not_subscribed: Counter[str] = Counter()
    not_copied: Counter[str] = Counter()  # inputs that could not be re-recorded
    corrupt: Counter[str] = Counter()
    objects_over_time: list[tuple[float, int]] = []
    scene_count = 0
    answers: list[dict[str, Any]] = []
    picture_paths: list[str] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    first_stamp: int | None = None
    asked_at = 0
    with BagWriter(tmp, background=True) as writer:

        def emit(outputs: list[Output]) -> None:
            nonlocal scene_count
            for o in outputs:
                writer.write(_output_topic(o.topic), o.msg, o.stamp_ns)
                if o.topic in ("answer", "scene_caption", "query_result"):
                    answers.append({"topic": o.topic, **json.loads(o.msg.data)})
                if o.topic == "scene":
                    scene_count += 1
                    scene = json.loads(o.msg.data)
                    rel = (scene["stamp_ns"] - (first_stamp or scene["stamp_ns"])) / 1e9
                    objects_over_time.append(
                        (rel, sum(1 for ob in scene["objects"] if ob["confirmed"]))
                    )
                    if pipeline.frames - 1 in sample and pipeline.last_result is not None:
                        picture_paths.append(
                            _picture(
                                out_dir, pipeline.frames - 1, pipeline.overlay(pipeline.last_result)
                            )
                        )
            if on_frame is not None and any(o.topic == "scene" for o in outputs):
                on_frame(pipeline, outputs)

        for n, rec in enumerate(iter_bag(bags, damage=damage), 1):
            if rec.error is not None:
                corrupt[rec.topic] += 1
                continue
            try:
                writer.write(rec.topic, rec.msg, rec.log_time_ns)
            except Exception:
                not_copied[rec.topic] += 1
            if rec.topic not in inputs:
                not_subscribed[rec.topic] += 1
                continue
            if first_stamp is None:
                first_stamp = rec.log_time_ns
            emit(ahead.process(rec.topic, rec.msg))
            if (
                ask_every
                and pipeline.frames
                and pipeline.frames % ask_every == 0
                and pipeline.frames != asked_at
            ):
                asked_at = pipeline.frames
                for question in questions or ():
                    emit(pipeline.ask(question))
            if bar is not None and n % 20 == 0:
                bar.update(rec.log_time_ns, pipeline.frames, _drops(pipeline))
        emit(ahead.finish())
        if bar is not None:
            bar.close(span[1] or 0, pipeline.frames, _drops(pipeline))
        for question in questions or ():
            emit(pipeline.ask(question))
        for text in queries or ():
            emit(pipeline.ask(text, query=True))
        emit(pipeline.close())
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # DIR itself is the rosbag2 bag (metadata.yaml + output.mcap beside the reports), so
    # `ros2 bag play DIR` and rosbags' AnyReader(DIR) open it, and DIR/output.mcap too.
    for name in ("output.mcap", "metadata.yaml"):
        (tmp / name).replace(out_dir / name)
    shutil.rmtree(tmp)
    lost: Counter[str] = Counter()
    for d in damage:
        lost.update(d.lost)
    report = _report(pipeline, bags, not_subscribed, corrupt, lost, scene_count, elapsed)
    report["timing"]["cpu_s"] = round(cpu, 3)  # the process, all threads: differs between runs
    report["timing"]["cpu_ms_per_frame"] = round(cpu * 1e3 / max(pipeline.frames, 1), 3)
    report["versions"] = run_versions(pipeline.params, pipeline.models)
    report["damage"] = [d.to_json() for d in damage]
    report["pictures"] = picture_paths
    report["multimodal"] = answers
    report["inputs_not_copied_to_output"] = dict(sorted(not_copied.items()))
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    _markdown(out_dir, report, pipeline, objects_over_time)
    write_html(out_dir, report)
    return ReplayResult(out_dir, report)


def _drops(pipeline: Pipeline) -> int:
    return sum(
        n for row in pipeline.accounting().values() for k, n in row["dropped"].items()
        if k != "pending"
    )  # fmt: skip


def _picture(out_dir: Path, index: int, image: np.ndarray) -> str:
    path = out_dir / f"frame_{index:04d}.jpg"
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path.name


def _percentiles(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {
        "p50": round(float(np.percentile(v, 50)), 3),
        "p90": round(float(np.percentile(v, 90)), 3),
        "p99": round(float(np.percentile(v, 99)), 3),
        "max": round(float(v.max()), 3),
        "n": int(v.size),
    }


def _report(
    pipeline: Pipeline,
    bags: list[Path],
    not_subscribed: Counter[str],
    corrupt: Counter[str],
    lost: Counter[str],
    scene_count: int,
    elapsed: float,
) -> dict[str, Any]:
    accounting = pipeline.accounting()
    inputs = pipeline.inputs()
    for reason, counter in (("corrupt_in_bag", corrupt), ("lost_in_bag", lost)):
        for topic, n in counter.items():
            if reason == "lost_in_bag" and topic not in inputs:
                continue  # a topic the pipeline does not read: reported under damage
            row = accounting.setdefault(
                topic, {"role": inputs.get(topic), "in": 0, "used": 0, "dropped": {}}
            )
            row["in"] += n
            row["dropped"][reason] = row["dropped"].get(reason, 0) + n
    balanced = all(r["in"] == r["used"] + sum(r["dropped"].values()) for r in accounting.values())
    stage_ms = {k: _percentiles(v) for k, v in sorted(pipeline.timings.items()) if v}
    model_ms = sum(
        np.median(pipeline.timings[k]) for k in ("detector", "segmenter") if pipeline.timings.get(k)
    )
    other_ms = sum(
        np.median(v)
        for k, v in pipeline.timings.items()
        if k not in ("detector", "segmenter") and v
    )
    return {
        "bags": [str(b) for b in bags],
        "frames": pipeline.frames,
        "scene_messages": scene_count,
        "inputs": accounting,
        "inputs_balanced": balanced,
        "not_subscribed": dict(sorted(not_subscribed.items())),
        "detections_per_class": dict(sorted(pipeline.class_counts.items())),
        "filter": dict(sorted(pipeline.filter_counts.items())),
        "sync_resets": pipeline.sync.resets,
        "degraded": {  # frames published with a part missing, per reason; the newest in words
            "frames_per_reason": dict(sorted(pipeline.degraded_counts.items())),
            "last_problem": pipeline.degraded_detail,
        },
        "models": {
            "detector": pipeline.models.detector.manifest.name,
            "segmenter": seg.manifest.name if (seg := pipeline.models.segmenter) else None,
            "embedded_default": pipeline.models.embedded_default,
            "providers": [pipeline.models.detector.backend.provider],
        },
        "timing": {  # wall clock: differs between runs
            "elapsed_s": round(elapsed, 3),
            "frames_per_s": round(pipeline.frames / elapsed, 3) if elapsed > 0 else None,
            "stage_ms": stage_ms,
            "pipeline_ms_median_without_models": round(float(other_ms), 3),
            "model_ms_median": round(float(model_ms), 3),
        },
    }


def _markdown(
    out_dir: Path,
    report: dict[str, Any],
    pipeline: Pipeline,
    objects_over_time: list[tuple[float, int]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [
        k
        for k in (
            "decode",
            "detector",
            "segmenter",
            "align",
            "filter",
            "fusion3d",
            "tracking",
            "describe",
        )
        if pipeline.timings.get(k)
    ]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    if stages:
        ax[0].boxplot([pipeline.timings[k] for k in stages], showfliers=False)
        ax[0].set_xticks(range(1, len(stages) + 1), stages, rotation=30)
    ax[0].set_ylabel("ms")
    ax[0].set_title("latency per stage")
    if objects_over_time:
        t, n = zip(*objects_over_time, strict=True)
        ax[1].step(t, n, where="post")
    ax[1].set_xlabel("s since first message")
    ax[1].set_ylabel("confirmed objects")
    ax[1].set_title("objects over time")
    fig.tight_layout()
    fig.savefig(out_dir / "plots.png", dpi=90)
    plt.close(fig)
    lines = [
        "# Replay report",
        "",
        f"Bags: {', '.join(report['bags'])}",
        "",
        f"Frames: {report['frames']} (one scene message each: {report['scene_messages']})",
        f"Models: {report['models']['detector']} / {report['models']['segmenter']}"
        + (
            " (project-trained embedded defaults: trained on the synthetic world only)"
            if report["models"]["embedded_default"]
            else ""
        ),
        "",
        "| input topic | in | used | dropped |",
        "|---|---|---|---|",
    ]
    degraded = report["degraded"]
    for topic, row in sorted(report["inputs"].items()):
        dropped = ", ".join(f"{k} {v}" for k, v in row["dropped"].items()) or "-"
        lines.append(f"| {topic} | {row['in']} | {row['used']} | {dropped} |")
    lines += [
        "",
        f"Detections kept per class: {report['detections_per_class']}",
        f"Filter decisions: {report['filter']}",
        f"Frames degraded per reason: {degraded['frames_per_reason'] or 'none'}"
        + (f" (last: {degraded['last_problem']})" if degraded["last_problem"] else ""),
        "",
        f"Wall clock: {report['timing']['elapsed_s']} s, "
        f"{report['timing']['frames_per_s']} frames/s",
        "",
        "![plots](plots.png)",
        "",
    ]
    lines += [f"![frame]({p})" for p in report.get("pictures", [])]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
