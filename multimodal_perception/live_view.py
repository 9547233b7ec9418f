"""``mmp replay --foxglove [PORT]``: a live Foxglove WebSocket view of a replay.

Owns the Foxglove side: a ``foxglove-sdk`` WebSocket server on 127.0.0.1 (the optional
``foxglove`` extra) and the conversion of each frame the pipeline finishes into Foxglove
messages: the camera image, box annotations (kept: class and track id; rejected: the
filter's reason), the pipeline's overlay picture, the lidar obstacle points the frame used
(back-projected from the camera projection into the camera frame), the base_link ->
camera transform, 3D objects as scene entities (cube, label with track id and speed,
velocity arrow), the scene JSON, the scene text and events (tracks appearing and leaving,
degraded sensors) as logs. ``config/foxglove_layout.json`` arranges the panels.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import cv2
import numpy as np

TOPICS = {
    "image": "/camera/image/compressed",
    "annotations": "/camera/annotations",
    "overlay": "/camera/overlay/compressed",
    "points": "/lidar/obstacle_points",
    "tf": "/tf",
    "objects": "/objects",
    "scene": "/scene",
    "text": "/scene_text",
    "events": "/events",
}
KEPT = (0.1, 0.85, 0.2, 1.0)
REJECTED = (0.95, 0.2, 0.2, 1.0)


def _fox() -> Any:
    try:
        import foxglove
    except ImportError:
        raise ValueError("--foxglove needs foxglove-sdk: pip install '.[foxglove]'") from None
    return foxglove


class FoxgloveView:
    """A WebSocket server; :meth:`publish` is ``replay()``'s ``on_frame`` callback."""

    def __init__(self, port: int = 8765, host: str = "127.0.0.1") -> None:
        foxglove = _fox()
        from foxglove import channels as ch

        self.m = foxglove.messages
        self.context = foxglove.Context()
        self.subscriptions = 0
        self._subscribed = threading.Condition()
        view = self

        class _Listener(foxglove.ServerListener):  # type: ignore[misc]
            def on_subscribe(self, client: Any, channel: Any) -> None:
                with view._subscribed:
                    view.subscriptions += 1
                    view._subscribed.notify_all()

            def on_unsubscribe(self, client: Any, channel: Any) -> None:
                with view._subscribed:
                    view.subscriptions -= 1

        ctx = {"context": self.context}
        self.channels = {
            "image": ch.CompressedImageChannel(TOPICS["image"], **ctx),
            "annotations": ch.ImageAnnotationsChannel(TOPICS["annotations"], **ctx),
            "overlay": ch.CompressedImageChannel(TOPICS["overlay"], **ctx),
            "points": ch.PointCloudChannel(TOPICS["points"], **ctx),
            "tf": ch.FrameTransformsChannel(TOPICS["tf"], **ctx),
            "objects": ch.SceneUpdateChannel(TOPICS["objects"], **ctx),
            "scene": foxglove.Channel(TOPICS["scene"], message_encoding="json", **ctx),
            "text": ch.LogChannel(TOPICS["text"], **ctx),
            "events": ch.LogChannel(TOPICS["events"], **ctx),
        }
        self.server = foxglove.start_server(
            name="multimodal_perception replay",
            host=host,
            port=port,
            context=self.context,
            server_listener=_Listener(),
        )
        self.port: int = self.server.port
        self.frames = 0
        self._tracks: dict[int, str] = {}
        self._degraded: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def wait_for_subscribers(self, n: int, timeout_s: float) -> bool:
        """True once ``n`` channel subscriptions exist (tests, ``--foxglove`` waiting)."""
        with self._subscribed:
            return self._subscribed.wait_for(lambda: self.subscriptions >= n, timeout_s)

    def close(self) -> None:
        self.server.stop()

    # -- one frame ------------------------------------------------------------------------
    def publish(self, pipeline: Any, outputs: list[Any]) -> None:
        result = pipeline.last_result
        scenes = [json.loads(o.msg.data) for o in outputs if o.topic == "scene"]
        if result is None or not scenes:
            return
        scene, ns = scenes[-1], result.stamp_ns
        texts = [o.msg.data for o in outputs if o.topic == "scene_text"]
        m, c = self.m, self.channels
        stamp = m.Timestamp(ns // 10**9, ns % 10**9)
        _, jpeg = cv2.imencode(".jpg", result.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        c["image"].log(
            m.CompressedImage(
                timestamp=stamp, frame_id=result.camera_frame, data=jpeg.tobytes(), format="jpeg"
            ),
            log_time=ns,
        )
        c["annotations"].log(self._annotations(result, scene, stamp), log_time=ns)
        _, over = cv2.imencode(".jpg", pipeline.overlay(result), [cv2.IMWRITE_JPEG_QUALITY, 80])
        c["overlay"].log(
            m.CompressedImage(
                timestamp=stamp, frame_id=result.camera_frame, data=over.tobytes(), format="jpeg"
            ),
            log_time=ns,
        )
        cloud = self._points(pipeline, result)
        if cloud is not None:
            c["points"].log(
                m.PointCloud(
                    timestamp=stamp,
                    frame_id=result.camera_frame,
                    point_stride=16,
                    fields=[
                        m.PackedElementField(
                            name=n, offset=4 * i, type=m.PackedElementFieldNumericType.Float32
                        )
                        for i, n in enumerate(("x", "y", "z", "depth"))
                    ],
                    data=cloud.tobytes(),
                ),
                log_time=ns,
            )
        tf = self._transform(pipeline, result, stamp)
        if tf is not None:
            c["tf"].log(m.FrameTransforms(transforms=[tf]), log_time=ns)
        c["objects"].log(self._entities(scene, stamp), log_time=ns)
        c["scene"].log(scene, log_time=ns)
        for text in texts:
            c["text"].log(
                m.Log(timestamp=stamp, level=m.LogLevel.Info, message=text, name="scene"),
                log_time=ns,
            )
        for level, message in self._events(scene):
            c["events"].log(
                m.Log(timestamp=stamp, level=level, message=message, name="events"), log_time=ns
            )
        self.frames += 1

    def _annotations(self, result: Any, scene: dict[str, Any], stamp: Any) -> Any:
        from .ros_pkg.frame_messages import rejection_ids

        m = self.m
        points, texts = [], []

        def box(b: Any, color: tuple[float, ...], label: str) -> None:
            x1, y1, x2, y2 = (float(v) for v in b)
            corners = [m.Point2(x=x, y=y) for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]
            points.append(
                m.PointsAnnotation(
                    timestamp=stamp,
                    type=m.PointsAnnotationType.LineLoop,
                    points=corners,
                    outline_color=m.Color(r=color[0], g=color[1], b=color[2], a=color[3]),
                    thickness=2.0,
                )
            )
            texts.append(
                m.TextAnnotation(
                    timestamp=stamp,
                    position=m.Point2(x=x1, y=max(y1 - 2.0, 0.0)),
                    text=label,
                    font_size=12.0,
                    text_color=m.Color(r=color[0], g=color[1], b=color[2], a=1.0),
                    background_color=m.Color(r=0.0, g=0.0, b=0.0, a=0.6),
                )
            )

        for ob in scene["objects"]:
            box(ob["box_2d"], KEPT, f"#{ob['track_id']} {ob['class']} {ob['score']:.2f}")
        for i, reason in zip(result.rejected(), rejection_ids(result), strict=True):
            name = result.detections.class_names[int(result.detections.class_ids[i])]
            box(result.detections.boxes[i], REJECTED, f"{name} rejected: {reason}")
        return m.ImageAnnotations(points=points, texts=texts)

    @staticmethod
    def _points(pipeline: Any, result: Any) -> np.ndarray | None:
        """The lidar points the frame used (x, y, z in the camera frame, depth), float32."""
        camera = pipeline.camera_model
        if result.lidar_uv is None or camera is None or not len(result.lidar_uv):
            return None
        uv = np.asarray(result.lidar_uv, dtype=np.float64).reshape(-1, 1, 2)
        xy = cv2.undistortPoints(uv, camera.K, camera.D).reshape(-1, 2)
        d = np.asarray(result.lidar_depth, dtype=np.float64)
        xyz = np.column_stack([xy * d[:, None], d, d])
        return xyz.astype(np.float32)

    def _transform(self, pipeline: Any, result: Any, stamp: Any) -> Any:
        m = self.m
        try:
            T = pipeline.tf.lookup("base_link", result.camera_frame, result.stamp_ns)
        except Exception:  # no transform yet: the cloud stays in the camera frame
            return None
        from scipy.spatial.transform import Rotation

        q = Rotation.from_matrix(T[:3, :3]).as_quat()
        return m.FrameTransform(
            timestamp=stamp,
            parent_frame_id="base_link",
            child_frame_id=result.camera_frame,
            translation=m.Vector3(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
            rotation=m.Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
        )

    def _entities(self, scene: dict[str, Any], stamp: Any) -> Any:
        m = self.m
        entities = []
        for ob in scene["objects"]:
            (x, y, z), yaw = ob["center"], float(ob["yaw"])
            color = KEPT if ob["confirmed"] else (0.9, 0.8, 0.1, 1.0)
            rgba = m.Color(r=color[0], g=color[1], b=color[2], a=0.5)
            orient = m.Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))
            pose = m.Pose(position=m.Vector3(x=x, y=y, z=z), orientation=orient)
            sx, sy, sz = ob["size"]
            speed = ob.get("speed_mps")
            label = f"#{ob['track_id']} {ob['class']}" + (
                f" {speed:.1f} m/s" if speed is not None else ""
            )
            arrows = []
            if ob.get("velocity"):
                vx, vy = float(ob["velocity"][0]), float(ob["velocity"][1])
                heading = math.atan2(vy, vx)
                arrows.append(
                    m.ArrowPrimitive(
                        pose=m.Pose(
                            position=m.Vector3(x=x, y=y, z=z + sz / 2),
                            orientation=m.Quaternion(
                                x=0.0, y=0.0, z=math.sin(heading / 2), w=math.cos(heading / 2)
                            ),
                        ),
                        shaft_length=max(math.hypot(vx, vy), 0.1),
                        shaft_diameter=0.15,
                        head_length=0.5,
                        head_diameter=0.4,
                        color=m.Color(r=0.2, g=0.5, b=1.0, a=1.0),
                    )
                )
            entities.append(
                m.SceneEntity(
                    timestamp=stamp,
                    frame_id=scene.get("frame_id", "base_link"),
                    id=f"track_{ob['track_id']}",
                    lifetime=m.Duration(sec=0, nsec=300_000_000),
                    metadata=[
                        m.KeyValuePair(key="track_id", value=str(ob["track_id"])),
                        m.KeyValuePair(key="class", value=ob["class"]),
                        m.KeyValuePair(key="velocity", value=json.dumps(ob.get("velocity"))),
                    ],
                    cubes=[
                        m.CubePrimitive(pose=pose, size=m.Vector3(x=sx, y=sy, z=sz), color=rgba)
                    ],
                    texts=[
                        m.TextPrimitive(
                            pose=m.Pose(position=m.Vector3(x=x, y=y, z=z + sz / 2 + 0.8)),
                            billboard=True,
                            font_size=14.0,
                            scale_invariant=True,
                            color=m.Color(r=1.0, g=1.0, b=1.0, a=1.0),
                            text=label,
                        )
                    ],
                    arrows=arrows,
                )
            )
        return m.SceneUpdate(entities=entities)

    def _events(self, scene: dict[str, Any]) -> list[tuple[Any, str]]:
        """Tracks appearing and leaving, degraded sensors changing: (log level, words)."""
        m = self.m
        now = {ob["track_id"]: ob["class"] for ob in scene["objects"]}
        events = [
            (m.LogLevel.Info, f"track {t} ({cls}) appeared")
            for t, cls in now.items()
            if t not in self._tracks
        ]
        events += [
            (m.LogLevel.Info, f"track {t} ({cls}) left")
            for t, cls in self._tracks.items()
            if t not in now
        ]
        degraded = tuple(scene.get("degraded", ()))
        if degraded != self._degraded:
            level = m.LogLevel.Warning if degraded else m.LogLevel.Info
            events.append((level, f"degraded: {', '.join(degraded) or 'none'}"))
        self._tracks, self._degraded = now, degraded
        return events
