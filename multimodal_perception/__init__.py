"""multimodal_perception: ROS 2 camera, lidar and radar perception.

The importable package gathers the design card's folders: ``ros_pkg`` (message
conversion, bags, the rclpy node), ``perception`` (models), ``fusion`` (sync,
transforms, projection, filtering, 3D fusion, tracking), ``sim`` (synthetic world) and
``datasets`` (readers for the real recordings used in tests and benchmarks).
"""

__version__ = "0.1.0"
