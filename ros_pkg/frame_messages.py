"""A frame's result as output messages: the encoder stage of the data path.

``encode_frame`` turns a ``FrameResult`` into the node's output topics (relative to its
namespace): ``detections_2d`` (kept boxes, ids = track ids), ``rejected_2d`` (every other
detector box, id = ``reason:evidence`` or ``duplicate_of:<box>``), ``objects_3d``,
``markers``, ``scene`` (JSON), ``scene_text``, ``segmentation`` and ``debug_image``.
``encode_scene_objects`` does the 3D and scene topics for a scene built from several
frames (a camera rig's merged scene). Message classes come from the factory (rosbags for
bags, rosidl under rclpy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import outputs as out
from .factory import MessageFactory
from .image import array_to_image


@dataclass(frozen=True)
class Output:
    topic: str  # relative to the node's namespace, except "/diagnostics"
    msg: Any
    stamp_ns: int


def rejection_ids(result: Any) -> list[str]:
    ids = []
    for i in result.rejected():
        if i in result.duplicates:
            ids.append(f"duplicate_of:{result.duplicates[i]}")
        else:
            d = result.decisions[i]
            ids.append(f"{d.reason}:{d.evidence:.2f}")
    return ids


def encode_frame(
    result: Any,
    factory: MessageFactory,
    base_frame: str,
    rejected: bool = True,
    segmentation: bool = True,
    debug_image: np.ndarray | None = None,
) -> list[Output]:
    """``result``: a ``FrameResult``; ``debug_image``: an overlay to publish, if any."""
    f = factory
    stamp, cam_frame = result.stamp_ns, result.camera_frame
    det = result.detections
    names = det.class_names

    def boxes(topic: str, rows: list[int], ids: list[str]) -> Output:
        msg = out.detection2d_array(
            f,
            stamp_ns=stamp,
            frame_id=cam_frame,
            boxes_xyxy=det.boxes[rows],
            class_ids=[names[det.class_ids[i]] for i in rows],
            scores=det.scores[rows],
            ids=ids,
        )
        return Output(topic, msg, stamp)

    def track_id(i: int) -> str:
        return str(result.tracks[i].track_id) if i in result.tracks else ""

    kept = result.kept
    msgs = [boxes("detections_2d", kept, [track_id(i) for i in kept])]
    if rejected:
        msgs.append(boxes("rejected_2d", result.rejected(), rejection_ids(result)))
    with3d = [i for i in kept if i in result.objects]
    msgs += _objects_3d(
        f,
        stamp,
        base_frame,
        np.array([result.objects[i].center for i in with3d]).reshape(-1, 3),
        np.array([result.objects[i].size for i in with3d]).reshape(-1, 3),
        np.array([result.objects[i].yaw for i in with3d]),
        [result.object_classes.get(i, names[det.class_ids[i]]) for i in with3d],
        [float(det.scores[i]) for i in with3d],
        [track_id(i) for i in with3d],
    )
    msgs += [
        Output("scene", out.string_msg(f, json.dumps(result.scene, sort_keys=True)), stamp),
        Output("scene_text", out.string_msg(f, result.text), stamp),
    ]
    seg = result.segmentation
    if seg is not None and segmentation:
        image = array_to_image(seg.labels, "mono8", factory=f, stamp_ns=stamp, frame_id=cam_frame)
        msgs.append(Output("segmentation", image, stamp))
    if debug_image is not None:
        image = array_to_image(debug_image, "bgr8", factory=f, stamp_ns=stamp, frame_id=cam_frame)
        msgs.append(Output("debug_image", image, stamp))
    return msgs


def _objects_3d(
    f: MessageFactory,
    stamp: int,
    base_frame: str,
    centers: np.ndarray,
    sizes: np.ndarray,
    yaws: np.ndarray,
    labels: list[str],
    scores: list[float],
    track_ids: list[str],
) -> list[Output]:
    """``objects_3d`` (Detection3DArray) and ``markers`` for boxes in base_link."""
    boxes3d = out.detection3d_array(
        f,
        stamp_ns=stamp,
        frame_id=base_frame,
        centers=centers,
        sizes=sizes,
        yaws=yaws,
        class_ids=labels,
        scores=scores,
        ids=track_ids,
    )
    markers = out.box_markers(
        f,
        stamp_ns=stamp,
        frame_id=base_frame,
        centers=centers,
        sizes=sizes,
        yaws=yaws,
        labels=[f"{c} #{t}" if t else c for c, t in zip(labels, track_ids, strict=True)],
    )
    return [Output("objects_3d", boxes3d, stamp), Output("markers", markers, stamp)]


def encode_scene_objects(
    scene: dict[str, Any], text: str, factory: MessageFactory, base_frame: str
) -> list[Output]:
    """A scene built from several frames (a camera rig's merged scene): its objects with
    a 3D position as ``objects_3d`` and ``markers``, the JSON on ``scene``, ``text`` on
    ``scene_text``."""
    f, stamp = factory, scene["stamp_ns"]
    in3d = [o for o in scene["objects"] if o["center"] is not None]
    text_msg = out.string_msg(f, text)
    msgs = _objects_3d(
        f,
        stamp,
        base_frame,
        np.array([o["center"] for o in in3d], dtype=float).reshape(-1, 3),
        np.array([o["size"] for o in in3d], dtype=float).reshape(-1, 3),
        np.array([o["yaw"] for o in in3d], dtype=float),
        [o["class"] for o in in3d],
        [float(o["score"]) for o in in3d],
        [str(o["track_id"]) if o["track_id"] is not None else "" for o in in3d],
    )
    scene_json = out.string_msg(f, json.dumps(scene, sort_keys=True))
    return [*msgs, Output("scene", scene_json, stamp), Output("scene_text", text_msg, stamp)]


def label_info_output(result: Any, factory: MessageFactory) -> Output:
    """vision_msgs/LabelInfo of the segmentation's classes (latched: sent once)."""
    seg = result.segmentation
    info = out.label_info(
        factory, stamp_ns=result.stamp_ns, frame_id=result.camera_frame,
        class_names=seg.class_names,
    )  # fmt: skip
    return Output("label_info", info, result.stamp_ns)
