"""The plain rclpy node: configured and started in its constructor, stopped on SIGINT or
SIGTERM (pending frames are processed and published, the final accounting is printed,
exit code 0). Its wiring (parameters, QoS, subscriptions, publishers, timers, the
compute thread) is ``node_wiring.PerceptionWiring``, shared with the managed node
(``managed_node.py``, selected with the launch argument ``managed:=true``).

tf comes from tf2_ros where it is installed; elsewhere (ROS 2 from PyPI wheels) the node
subscribes ``/tf`` and ``/tf_static`` (transient local) into the project's own buffer,
with the same lookup semantics.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from ..config import ParameterError
from .node_interface import OUTPUT_TYPES, PER_CAMERA_OUTPUTS  # noqa: F401 (re-exported)
from .node_wiring import PerceptionWiring


class PerceptionNode(PerceptionWiring, Node):
    def __init__(self, **kwargs: Any) -> None:
        Node.__init__(self, "multimodal_perception", **kwargs)
        self.configure()
        self.start()

    def shutdown(self) -> dict[str, Any]:
        """Stop computing: the waiting frame and the synchroniser's pending ones are run
        and published; returns (and prints) the final accounting."""
        self.stop()
        return self.release()


def spin_until_stopped(
    make_node: Callable[[], Any], finish: Callable[[Any], None], args: list[str] | None = None
) -> int:
    """rclpy up with the node's own SIGINT/SIGTERM handling (so that it can finish its
    frames and report before the context goes down; rclpy's handler would shut the
    context down first), the node spun until a signal or ``node.finished``; exit code."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        node = make_node()
    except (ParameterError, ValueError) as exc:
        print(f"multimodal_perception: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok() and not getattr(node, "finished", False):
            executor.spin_once(timeout_sec=0.05)
    finally:
        finish(node)
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    return spin_until_stopped(PerceptionNode, lambda node: node.shutdown(), args)


if __name__ == "__main__":
    sys.exit(main())
