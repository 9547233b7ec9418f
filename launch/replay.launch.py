"""Replay a bag into the node: ``ros2 bag play --clock`` plus the node with use_sim_time."""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    Shutdown,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("multimodal_perception"))
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "bag",
                default_value=str(share / "bags" / "urban_crossing_5s"),
                description="rosbag2 folder to play",
            ),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
            DeclareLaunchArgument(
                "config_file",
                default_value=str(share / "config" / "perception.yaml"),
                description="ROS 2 parameter file of the node",
            ),
            DeclareLaunchArgument(
                "model_dir",
                default_value="",
                description="directory with real models ('' = the embedded tiny models)",
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(share / "launch" / "perception.launch.py")),
                launch_arguments={
                    "use_sim_time": "true",
                    "config_file": LaunchConfiguration("config_file"),
                    "model_dir": LaunchConfiguration("model_dir"),
                }.items(),
            ),
            ExecuteProcess(
                cmd=[
                    "ros2",
                    "bag",
                    "play",
                    LaunchConfiguration("bag"),
                    "--clock",
                    "--rate",
                    LaunchConfiguration("rate"),
                ],
                output="screen",
                on_exit=Shutdown(reason="the bag has been played"),
            ),
        ]
    )
