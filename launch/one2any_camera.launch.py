"""one2any for one RGB-D camera: the core launch with the camera's topics (defaults: a realsense2_camera
driver started with camera_namespace:=<camera> camera_name:=camera and align_depth.enable:=true) and
the mask from a segmenter under <camera>/mask. Several cameras = several includes with other `camera`s:
    ros2 launch one2any_ros one2any_camera.launch.py camera:=cam1
    ros2 launch one2any_ros one2any_camera.launch.py camera:=cam2 object_frame:=mug

It also points Fast DDS at the package's profile (when none is set) for every process this launch
starts; a camera driver started elsewhere needs the same:
    export FASTDDS_DEFAULT_PROFILES_FILE=$(python3 -m one2any_ros.ros.transport)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution

from one2any_ros.ros.transport import PROFILE_PATH, USER_SETTINGS

ARGS = [  # (name, default, description)
    ("camera", "camera", "camera namespace: the node runs as /<camera>/one2any"),
    ("camera_name", "camera", "the driver's camera_name (realsense2_camera puts topics under /<camera>/<camera_name>)"),
    ("mask_topic", "mask", "mask topic relative to /<camera> (mono8, non-zero = object)"),
    ("backend", "auto", "auto | one2any | classic | icp"),
    ("device", "auto", "auto | cpu | cuda"),
    ("object_frame", "object", "TF child frame of the object"),
    ("debug", "false", "publish the pose overlay on ~/debug_image"),
    ("use_sim_time", "false", "use /clock (replaying a bag with --clock)"),
]


def generate_launch_description():
    cam, name = LaunchConfiguration("camera"), LaunchConfiguration("camera_name")
    base = ["/", cam, name]  # os.path.join semantics: /<camera>/<camera_name>/...
    core_launch = os.path.join(get_package_share_directory("one2any_ros"), "launch", "one2any.launch.py")
    core = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(core_launch),
        launch_arguments={
            "namespace": cam,
            "backend": LaunchConfiguration("backend"),
            "device": LaunchConfiguration("device"),
            "object_frame": LaunchConfiguration("object_frame"),
            "debug": LaunchConfiguration("debug"),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
            "rgb_topic": PathJoinSubstitution(base + ["color", "image_raw"]),
            "depth_topic": PathJoinSubstitution(base + ["aligned_depth_to_color", "image_raw"]),
            "camera_info_topic": PathJoinSubstitution(base + ["color", "camera_info"]),
            "mask_topic": PathJoinSubstitution(["/", cam, LaunchConfiguration("mask_topic")]),
        }.items())
    actions = [DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGS]
    if not any(os.environ.get(k) for k in USER_SETTINGS):
        actions.append(SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", str(PROFILE_PATH)))
    return LaunchDescription(actions + [core])
