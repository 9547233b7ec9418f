"""Start the multimodal_perception node: the parameter file, input remaps, namespace.

``managed:=true`` starts the managed (lifecycle) node instead of the plain one: it waits
unconfigured for a system manager (Nav2's lifecycle manager, ``ros2 lifecycle set``) to
configure and activate it. Wiring only. Every launch argument is declared with a
description; topics are remapped (the node subscribes to the defaults in
config/perception.yaml); the few parameters set here are named in the node's parameter
schema (multimodal_perception/config.py).
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

# The node subscribes to these topics (config/perception.yaml); the launch remaps them.
TOPIC_ARGUMENTS = (
    ("camera_topic", "/camera/image_raw", "sensor_msgs/Image input"),
    ("camera_compressed_topic", "/camera/image_raw/compressed", "CompressedImage input"),
    ("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo input"),
    ("lidar_topic", "/lidar/points", "sensor_msgs/PointCloud2 lidar input"),
    ("radar_topic", "/radar/points", "radar input (type: parameter topics.radar_type)"),
)


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("multimodal_perception"))
    args = [
        DeclareLaunchArgument(
            "config_file",
            default_value=str(share / "config" / "perception.yaml"),
            description="ROS 2 parameter file of the node",
        ),
        DeclareLaunchArgument(
            "namespace", default_value="perception", description="namespace of the node's outputs"
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="use /clock (rosbag replay)"
        ),
        DeclareLaunchArgument(
            "model_dir",
            default_value="",
            description="directory with real models ('' = the embedded tiny models)",
        ),
        DeclareLaunchArgument(
            "vlm_backend",
            default_value="none",
            description="multimodal model: none (grounded answers) | transformers | openai",
        ),
        DeclareLaunchArgument(
            "vlm_model_dir",
            default_value="",
            description="local Hugging Face model directory for vlm_backend:=transformers",
        ),
        DeclareLaunchArgument(
            "debug_image", default_value="false", description="publish an overlay on debug_image"
        ),
        DeclareLaunchArgument(
            "managed",
            default_value="false",
            description="true: the managed (lifecycle) node, configured and activated by a "
            "lifecycle manager; false: the plain node, running at once",
        ),
    ]
    args += [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in TOPIC_ARGUMENTS
    ]
    managed = LaunchConfiguration("managed")
    plain = _perception_node(Node, "multimodal_perception_node", UnlessCondition(managed))
    lifecycle = _perception_node(
        LifecycleNode, "multimodal_perception_managed_node", IfCondition(managed)
    )
    return LaunchDescription([*args, plain, lifecycle])


def _perception_node(kind: type, executable: str, condition: object) -> Node:
    return kind(
        package="multimodal_perception",
        executable=executable,
        condition=condition,
        name="multimodal_perception",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("config_file"),
            {
                "use_sim_time": ParameterValue(
                    LaunchConfiguration("use_sim_time"), value_type=bool
                ),
                "models.directory": LaunchConfiguration("model_dir"),
                "vlm.backend": LaunchConfiguration("vlm_backend"),
                "vlm.model_dir": LaunchConfiguration("vlm_model_dir"),
                "output.debug_image": ParameterValue(
                    LaunchConfiguration("debug_image"), value_type=bool
                ),
            },
        ],
        remappings=[
            ("/camera/image_raw", LaunchConfiguration("camera_topic")),
            ("/camera/image_raw/compressed", LaunchConfiguration("camera_compressed_topic")),
            ("/camera/camera_info", LaunchConfiguration("camera_info_topic")),
            ("/lidar/points", LaunchConfiguration("lidar_topic")),
            ("/radar/points", LaunchConfiguration("radar_topic")),
        ],
    )
