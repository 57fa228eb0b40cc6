#!/usr/bin/env bash
# Build the tf2_msgs stand-in (ros_interfaces/tf2_msgs: msg/TFMessage only) into the project venv; the node
# publishes /tf with it when the real tf2_msgs (a full ROS 2 install) is not importable. A thin wrapper of
# tools/build_standin_msgs.sh (which says what it does), kept for its callers (tools/colcon_check.sh).
#
#   tools/build_tf2_msgs.sh [VENV] [BUILD_DIR]      (defaults: .venv, build/tf2_msgs)
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/build_standin_msgs.sh" tf2_msgs "$@"
