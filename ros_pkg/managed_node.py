"""The managed (lifecycle) node: the same wiring as the plain node, stepped by a system
manager (Nav2's lifecycle manager, Autoware, a launch file's lifecycle events, or
``ros2 lifecycle set``) through rclpy's lifecycle state machine:

- configure: parameters declared (first time) and read, models loaded, publishers made
  (lifecycle publishers: they publish only while active);
- activate: subscriptions, timers and the compute thread: frames flow;
- deactivate: input stops, the frames already received are finished and published, the
  models stay loaded (a later activate resumes at once);
- cleanup: models and publishers freed, the session's accounting printed (the
  multimodal workers' last captions and answers are not published: the publishers are
  already inactive);
- shutdown (from any state): as deactivate + cleanup where needed, then the process ends
  with exit code 0. SIGINT/SIGTERM take the shutdown transition.

Started with ``ros2 launch multimodal_perception perception.launch.py managed:=true`` or
the ``multimodal_perception_managed_node`` executable.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .node import spin_until_stopped
from .node_wiring import PerceptionWiring

SUCCESS = TransitionCallbackReturn.SUCCESS


class ManagedPerceptionNode(PerceptionWiring, LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        LifecycleNode.__init__(self, "multimodal_perception", **kwargs)
        self.active = False
        self._inputs: list[Any] = []
        self._compute = None
        self.finished = False  # the shutdown transition was taken: the process ends

    def _publisher(self, msg_type: Any, topic: str, qos: Any) -> Any:
        return self.create_lifecycle_publisher(msg_type, topic, qos)

    def _unpublish(self, publisher: Any) -> None:
        self.destroy_lifecycle_publisher(publisher)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure()
        except (ValueError, OSError) as exc:  # a bad parameter (ParameterError), a model file
            self.get_logger().error(f"configure failed: {exc}")
            self.pipeline = None
            return TransitionCallbackReturn.FAILURE
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if not self._attempt("activate", self.start):
            return TransitionCallbackReturn.ERROR
        self.active = True
        return super().on_activate(state)  # the lifecycle publishers go live

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if not self._attempt("deactivate", self._stop_if_active):
            return TransitionCallbackReturn.ERROR
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        if not self._attempt("cleanup", self.release):
            return TransitionCallbackReturn.ERROR
        self.pipeline = None  # the models with it
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._attempt("shutdown", self._tear_down)
        self.finished = True
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop what runs, free what is held, back to unconfigured."""
        self.get_logger().error(f"error in state {state.label}: back to unconfigured")
        self._attempt("error recovery", self._tear_down)
        return SUCCESS

    def _attempt(self, what: str, step: Callable[[], Any]) -> bool:
        """rclpy turns an exception in a transition into ERROR without a word: log it."""
        try:
            step()
        except Exception:
            self.get_logger().error(f"{what} failed:\n{traceback.format_exc()}")
            return False
        return True

    def _tear_down(self) -> None:
        try:
            self._stop_if_active()
        finally:
            if self.pipeline is not None:
                try:
                    self.release()
                finally:
                    self.pipeline = None

    def _stop_if_active(self) -> None:
        """Frames received so far are finished while the publishers are live; also what
        a start that failed half-way left running."""
        self.active = False
        if self.pipeline is not None and (self._inputs or self._compute is not None):
            self.stop()


def _finish(node: ManagedPerceptionNode) -> None:
    if not node.finished:  # a signal: take the shutdown transition from where it is
        node.trigger_shutdown()


def main(args: list[str] | None = None) -> int:
    return spin_until_stopped(ManagedPerceptionNode, _finish, args)


if __name__ == "__main__":
    sys.exit(main())
