"""``mmp replay --foxglove``: a real WebSocket client (``websockets``) subscribes to every
channel of the live view while the shipped bag replays, and decodes each message (protobuf
from the schema the server advertises, JSON)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

if os.environ.get("CI") != "true":
    pytest.importorskip("foxglove")
    pytest.importorskip("websockets")
import websockets
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from multimodal_perception.live_view import TOPICS, FoxgloveView
from multimodal_perception.replay import replay

ROOT = Path(__file__).resolve().parents[1]
BAG = ROOT / "bags" / "urban_crossing_5s"
LAYOUT = ROOT / "config" / "foxglove_layout.json"


def _decoder(channel: dict[str, Any]) -> Any:
    if channel["encoding"] == "json":
        return json.loads
    assert channel["encoding"] == "protobuf" and channel["schemaEncoding"] == "protobuf"
    pool = descriptor_pool.DescriptorPool()
    for f in descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"])).file:
        pool.Add(f)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))
    return cls.FromString


async def _client(view: FoxgloveView, out: Path, result: dict[str, Any]) -> dict[str, list]:
    url = f"ws://127.0.0.1:{view.port}"
    async with websockets.connect(url, subprotocols=["foxglove.sdk.v1"], max_size=None) as ws:
        channels: dict[int, dict[str, Any]] = {}
        while len(channels) < len(TOPICS):
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["op"] == "advertise":
                channels.update({c["id"]: c for c in msg["channels"]})
        subs = {i: c for i, c in enumerate(channels.values())}
        await ws.send(
            json.dumps(
                {
                    "op": "subscribe",
                    "subscriptions": [{"id": i, "channelId": c["id"]} for i, c in subs.items()],
                }
            )
        )
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, view.wait_for_subscribers, len(subs), 10.0)
        decoders = {i: _decoder(c) for i, c in subs.items()}

        def run() -> None:
            result["report"] = replay([BAG], out, progress=False, on_frame=view.publish).report

        worker = threading.Thread(target=run)
        worker.start()
        got: dict[str, list] = defaultdict(list)
        while True:
            try:
                data = await asyncio.wait_for(ws.recv(), 2.0)
            except TimeoutError:
                if not worker.is_alive():
                    break
                continue
            if isinstance(data, str):
                continue
            assert data[0] == 1  # messageData
            sub, log_time = struct.unpack_from("<IQ", data, 1)
            got[subs[sub]["topic"]].append((log_time, decoders[sub](data[13:])))
        worker.join()
        return got


def test_live_view_streams_every_channel(tmp_path: Path) -> None:
    view = FoxgloveView(port=0)
    result: dict[str, Any] = {}
    try:
        got = asyncio.run(_client(view, tmp_path / "replay", result))
    finally:
        view.close()
    frames = result["report"]["frames"]
    counts = {topic: len(got[topic]) for topic in TOPICS.values()}
    print("channels and messages:", counts, "frames:", frames)
    assert frames > 0 and view.frames == frames
    for key in ("image", "annotations", "overlay", "objects", "scene", "text"):
        assert counts[TOPICS[key]] == frames, key
    assert counts[TOPICS["points"]] > 0 and counts[TOPICS["tf"]] > 0
    assert counts[TOPICS["events"]] > 0
    _, image = got[TOPICS["image"]][-1]
    pixels = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
    assert image.format == "jpeg" and pixels.ndim == 3 and pixels.shape[0] > 100
    labels = [t.text for _, a in got[TOPICS["annotations"]] for t in a.texts]
    assert any("rejected:" in s for s in labels) and any(s.startswith("#") for s in labels)
    _, cloud = got[TOPICS["points"]][-1]
    assert cloud.point_stride == 16 and len(cloud.data) % 16 == 0 and len(cloud.data) > 0
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "depth"]
    entities = [e for _, u in got[TOPICS["objects"]] for e in u.entities]
    assert entities and all(e.cubes and e.texts for e in entities)
    assert {kv.key for kv in entities[-1].metadata} >= {"track_id", "class", "velocity"}
    assert any(e.arrows for e in entities)  # tracks with a velocity get an arrow
    scenes = [s for _, s in got[TOPICS["scene"]]]
    assert all(s["schema"] == "mmp.scene/1" for s in scenes)
    assert [t for t, _ in got[TOPICS["scene"]]] == sorted(t for t, _ in got[TOPICS["scene"]])
    assert all(log.message for _, log in got[TOPICS["text"]])
    assert any("appeared" in log.message for _, log in got[TOPICS["events"]])
    layout = json.loads(LAYOUT.read_text())  # the shipped layout names the view's topics
    assert set(TOPICS.values()) - {TOPICS["tf"]} <= set(json.dumps(layout).split('"'))
