"""package.xml names every ROS package the code imports at run time (rosdep installs
from it: a missing entry is a node that fails on a fresh robot)."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET

from conftest import REPO

SOURCE_DIRS = ("ros_pkg", "launch", "multimodal_perception", "fusion", "perception", "sim")
# Python modules that come from ROS packages of another name.
ROS_PACKAGE_OF = {"tf2_ros": "tf2_ros_py"}
ROS_MODULES = {
    "rclpy",
    "launch",
    "launch_ros",
    "ament_index_python",
    "tf2_ros",
    "message_filters",
    "rosidl_runtime_py",
    "rcl_interfaces",
    "builtin_interfaces",
}


def imported_ros_packages() -> dict[str, str]:
    """ROS package -> the first file that imports it."""
    found: dict[str, str] = {}
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in ROS_MODULES or top.endswith("_msgs"):
                        package = ROS_PACKAGE_OF.get(top, top)
                        found.setdefault(package, str(path.relative_to(REPO)))
    return found


def declared_dependencies() -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag in ("exec_depend", "depend") and e.text}


def test_every_imported_ros_package_is_an_exec_depend():
    imported = imported_ros_packages()
    missing = {pkg: path for pkg, path in imported.items() if pkg not in declared_dependencies()}
    assert not missing, f"package.xml lacks exec_depend for {missing}"


def test_the_import_scan_finds_the_node_dependencies():
    imported = imported_ros_packages()
    assert {"rclpy", "rcl_interfaces", "sensor_msgs", "vision_msgs", "tf2_ros_py"} <= set(imported)
