"""one2any for one RGB-D camera: the core launch with the camera's topics (defaults: a realsense2_camera
driver started with camera_namespace:=<camera> camera_name:=camera and align_depth.enable:=true) and
the mask from a segmenter under <camera>/mask. Several cameras = several includes with other `camera`s:
    ros2 launch one2any_ros one2any_camera.launch.py camera:=cam1
    ros2 launch one2any_ros one2any_camera.launch.py camera:=cam2 object_frame:=mug params_file:=my.yaml

Parameters come from `params_file` (default: the package's config/one2any.yaml); the parameter arguments
(backend, device, ...) default to "" = not given and are passed on to the core launch only when given,
so they win over the file and nothing else does.

It also points Fast DDS at the package's profile (when none is set) for every process this launch
starts; a camera driver started elsewhere needs the same:
    export FASTDDS_DEFAULT_PROFILES_FILE=$(python3 -m one2any_ros.ros.transport)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource

from one2any_ros.ros.transport import PROFILE_PATH, USER_SETTINGS

PACKAGE = "one2any_ros"

ARGS = [  # (name, default, description); params_file's default is set in generate_launch_description
    ("camera", "camera", "camera namespace: the node runs as /<camera>/one2any"),
    ("camera_name", "camera", "the driver's camera_name (realsense2_camera puts topics under /<camera>/<camera_name>)"),
    ("mask_topic", "mask", "mask topic relative to /<camera> (mono8 / mono16 labels)"),
    ("params_file", None, "parameter file (`/**: ros__parameters:`)"),
    ("log_level", "info", "logging level of the node"),
]
# The core launch's parameter arguments: default "" = not given, passed on only when given.
PARAMETER_ARGS = [
    ("backend", "auto | one2any | classic | icp"),
    ("device", "auto | cpu | cuda"),
    ("object_frame", "TF child frame of the object"),
    ("publish_tf", "true | false: broadcast <camera frame> -> object_frame on /tf"),
    ("debug", "true | false: publish the pose overlay on ~/debug_image"),
    ("use_sim_time", "true | false: use /clock (replaying a bag with --clock)"),
]


def package_file(*parts):
    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def core_arguments(launch_configurations):
    """The core launch's arguments for this camera: {name: text}. Topics follow os.path.join (an absolute
    mask_topic stays as it is); params_file, log_level and the parameter arguments only when non-empty."""
    cfg = launch_configurations
    camera = cfg["camera"]
    base = os.path.join("/", camera, cfg["camera_name"])
    args = {
        "namespace": camera,
        "rgb_topic": os.path.join(base, "color", "image_raw"),
        "depth_topic": os.path.join(base, "aligned_depth_to_color", "image_raw"),
        "camera_info_topic": os.path.join(base, "color", "camera_info"),
        "mask_topic": os.path.join("/", camera, cfg["mask_topic"]),
    }
    for name in ["params_file", "log_level"] + [name for name, _ in PARAMETER_ARGS]:
        if cfg.get(name, ""):
            args[name] = cfg[name]
    return args


def _include_core(context):
    return [IncludeLaunchDescription(
        PythonLaunchDescriptionSource(package_file("launch", "one2any.launch.py")),
        launch_arguments=core_arguments(context.launch_configurations).items())]


def generate_launch_description():
    defaults = {"params_file": package_file("config", "one2any.yaml")}
    actions = [DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=desc)
               for name, default, desc in ARGS]
    actions += [DeclareLaunchArgument(name, default_value="", description=f"{desc} (default: from params_file)")
                for name, desc in PARAMETER_ARGS]
    if not any(os.environ.get(k) for k in USER_SETTINGS):
        actions.append(SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", str(PROFILE_PATH)))
    return LaunchDescription(actions + [OpaqueFunction(function=_include_core)])
