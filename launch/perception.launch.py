"""Start the multimodal_perception node: parameters from a YAML file, input remaps."""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, GroupAction, LogInfo
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node, PushRosNamespace

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("multimodal_perception"))
    args = [
        DeclareLaunchArgument(
            "config_file",
            default_value=str(share / "config" / "perception.yaml"),
            description="ROS 2 parameter file",
        ),
        DeclareLaunchArgument(
            "namespace",
            default_value="perception",
            description="namespace of the node and its outputs",
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="use /clock (rosbag replay)"
        ),
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument(
            "camera_compressed_topic", default_value="/camera/image_raw/compressed"
        ),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info"),
        DeclareLaunchArgument("lidar_topic", default_value="/lidar/points"),
        DeclareLaunchArgument("radar_topic", default_value="/radar/points"),
        DeclareLaunchArgument(
            "model_dir",
            default_value="",
            description="directory with real models ('' = embedded defaults)",
        ),
        DeclareLaunchArgument(
            "enable_vlm",
            default_value="false",
            description="start the multimodal (image-text) model worker",
        ),
        DeclareLaunchArgument(
            "debug_image",
            default_value="false",
            description="publish an overlay image on debug_image",
        ),
    ]
    node = Node(
        package="multimodal_perception",
        executable="multimodal_perception_node",
        name="multimodal_perception",
        output="screen",
        parameters=[
            LaunchConfiguration("config_file"),
            {
                "use_sim_time": PythonExpression(
                    ["'", LaunchConfiguration("use_sim_time"), "' == 'true'"]
                ),
                "output.debug_image": PythonExpression(
                    ["'", LaunchConfiguration("debug_image"), "' == 'true'"]
                ),
                "models.directory": LaunchConfiguration("model_dir"),
                "topics.camera": LaunchConfiguration("camera_topic"),
                "topics.camera_compressed": LaunchConfiguration("camera_compressed_topic"),
                "topics.camera_info": LaunchConfiguration("camera_info_topic"),
                "topics.lidar": LaunchConfiguration("lidar_topic"),
                "topics.radar": LaunchConfiguration("radar_topic"),
                "vlm.backend": PythonExpression(
                    [
                        "'transformers' if '",
                        LaunchConfiguration("enable_vlm"),
                        "' == 'true' else 'none'",
                    ]
                ),
                "vlm.model_dir": LaunchConfiguration("vlm_model_dir"),
            },
        ],
    )
    vlm_note = LogInfo(
        condition=IfCondition(LaunchConfiguration("enable_vlm")),
        msg=["multimodal model (transformers) from ", LaunchConfiguration("vlm_model_dir")],
    )
    return LaunchDescription(
        [*args, GroupAction([PushRosNamespace(LaunchConfiguration("namespace")), node]), vlm_note]
    )
