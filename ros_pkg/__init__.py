"""ROS message conversion, bag I/O and the rclpy node.

Everything here except ``node.py`` is importable without ROS: conversions are
duck-typed on field names, so they read rclpy messages and ``rosbags`` messages alike
and build either through a :class:`~multimodal_perception.ros_pkg.factory.MessageFactory`.
``node.py`` is the only module in the project that imports rclpy.
"""
