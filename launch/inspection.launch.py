"""Start the node for an inspection robot: the shipped parameters, the inspection profile
over them, and a zones file (events on <namespace>/events). Wiring only."""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("multimodal_perception"))
    config = share / "config"
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "zones_file",
                default_value=str(config / "zones_example.yaml"),
                description="YAML of inspection zones and rules",
            ),
            DeclareLaunchArgument(
                "profile",
                default_value=str(config / "inspection.yaml"),
                description="parameter file applied over perception.yaml",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="inspection", description="namespace of the outputs"
            ),
            DeclareLaunchArgument(
                "model_dir",
                default_value="",
                description="directory with real models ('' = the embedded tiny models)",
            ),
            Node(
                package="multimodal_perception",
                executable="multimodal_perception_node",
                name="multimodal_perception",
                namespace=LaunchConfiguration("namespace"),
                output="screen",
                parameters=[
                    str(config / "perception.yaml"),
                    LaunchConfiguration("profile"),
                    {
                        "inspection.zones_file": LaunchConfiguration("zones_file"),
                        "models.directory": LaunchConfiguration("model_dir"),
                    },
                ],
            ),
        ]
    )
