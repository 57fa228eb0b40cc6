"""One one2any node (a full ROS 2 install: `ros2 launch one2any_ros one2any.launch.py`).

Inputs are the node's relative topics rgb, depth, mask, camera_info, remapped here; outputs are
<namespace>/<node_name>/{pose,estimate,debug_image}, /tf and /diagnostics. Parameters come from
config/one2any.yaml (`/**` keys: any name and namespace) and the overrides below. On a machine without
`launch`, the same node runs as:
    one2any node --ros-args --params-file config/one2any.yaml -r __ns:=/cam1 -r rgb:=/cam1/color/image_raw ...
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

ARGS = [  # (name, default, description)
    ("namespace", "", "namespace of the node (e.g. /cam1): private names become <namespace>/<node_name>/..."),
    ("node_name", "one2any", "node name; the saved reference is named after <namespace>/<node_name>"),
    ("params_file", os.path.join(get_package_share_directory("one2any_ros"), "config", "one2any.yaml"),
     "parameter file (`/**: ros__parameters:`)"),
    ("backend", "auto", "auto | one2any | classic | icp (auto: one2any when a checkpoint loads, else classic)"),
    ("device", "auto", "auto | cpu | cuda"),
    ("object_frame", "object", "TF child frame of the object"),
    ("publish_tf", "true", "broadcast <camera frame> -> object_frame on /tf"),
    ("debug", "false", "publish the pose overlay on ~/debug_image"),
    ("use_sim_time", "false", "use /clock (replaying a bag with --clock)"),
    ("rgb_topic", "rgb", "colour image (rgb8/bgr8)"),
    ("depth_topic", "depth", "depth registered to the colour image (16UC1 mm or 32FC1 m)"),
    ("mask_topic", "mask", "object mask (mono8, non-zero = object) from any segmenter"),
    ("camera_info_topic", "camera_info", "CameraInfo of the colour image"),
    ("log_level", "info", "logging level of the node"),
]


def generate_launch_description():
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGS}
    node = Node(
        package="one2any_ros",
        executable="one2any_node",
        name=cfg["node_name"],
        namespace=cfg["namespace"],
        output="screen",
        emulate_tty=True,
        parameters=[
            cfg["params_file"],
            {
                "backend": cfg["backend"],
                "device": cfg["device"],
                "object_frame": cfg["object_frame"],
                "publish_tf": ParameterValue(cfg["publish_tf"], value_type=bool),
                "debug": ParameterValue(cfg["debug"], value_type=bool),
                "use_sim_time": ParameterValue(cfg["use_sim_time"], value_type=bool),
            },
        ],
        remappings=[
            ("rgb", cfg["rgb_topic"]),
            ("depth", cfg["depth_topic"]),
            ("mask", cfg["mask_topic"]),
            ("camera_info", cfg["camera_info_topic"]),
        ],
        arguments=["--ros-args", "--log-level", cfg["log_level"]],
    )
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=desc) for name, default, desc in ARGS] + [node])
