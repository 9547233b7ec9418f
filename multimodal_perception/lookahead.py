"""Replay's one-frame lookahead: the models of frame N+1 run while frame N is fused.

A complete frame is aligned at once (with the tf of that moment, as ``Pipeline.run``
would) and both models are started on it, each on its own worker (``FrameCore.prefetch``),
but its core runs only when the next frame is complete. The workers then run detector and
segmenter while this thread fuses, tracks and encodes the frame before.
Outputs are those of ``Pipeline.process``, one frame later; a time jump first runs the
frames held from before it, then resets. Only where latency does not matter: the node
runs each frame as soon as it is complete.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .frame import Aligned
from .pipeline import Pipeline
from .ros_pkg.frame_messages import Output


class Lookahead:
    def __init__(self, pipeline: Pipeline, depth: int = 1) -> None:
        self.pipeline = pipeline
        self.depth = depth
        self.held: deque[Aligned] = deque()
        self._jumped = False
        self._reset = pipeline.on_time_jump
        pipeline.on_time_jump = self._defer_jump

    def _defer_jump(self) -> None:
        if self.held:
            self._jumped = True  # ``process`` runs the held frames first
        else:
            self._reset()

    def process(self, topic: str, msg: Any) -> list[Output]:
        """``Pipeline.process`` with the frames' models run ahead."""
        groups = self.pipeline.ingest(topic, msg)
        outputs = self._drain(0) if self._jumped else []
        if self._jumped:  # the held frames ran in the time before the jump
            self._jumped = False
            self._reset()
        for group in groups:
            aligned = self.pipeline.align_group(group)
            if aligned is not None:
                self.pipeline.cores[aligned.camera.name].prefetch(aligned.frame)
                self.held.append(aligned)
            outputs += self._drain(self.depth)
        return outputs + self.pipeline.poll()

    def finish(self) -> list[Output]:
        """End of stream: the pending and the held frames' outputs."""
        for group in self.pipeline.flush():
            aligned = self.pipeline.align_group(group)
            if aligned is not None:
                self.held.append(aligned)
        return self._drain(0)

    def _drain(self, keep: int) -> list[Output]:
        outputs: list[Output] = []
        while len(self.held) > keep:
            outputs += self.pipeline.run_aligned(self.held.popleft())
        return outputs
